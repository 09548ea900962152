#define _GNU_SOURCE
#include "CRabbitMQShims.h"
#include <poll.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/socket.h>

amqp_rpc_reply_t spotguard_amqp_login_plain(amqp_connection_state_t state, const char *vhost,
                                            int channel_max, int frame_max, int heartbeat,
                                            const char *user, const char *password,
                                            const char *connection_name) {
    /* rabbitmq-c does not announce connection.blocked on its own; without it the broker
       blocks a publisher under a resource alarm without saying so. */
    amqp_table_entry_t capabilities[1];
    capabilities[0].key = amqp_cstring_bytes("connection.blocked");
    capabilities[0].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    capabilities[0].value.value.boolean = 1;
    amqp_table_entry_t properties[2];
    properties[0].key = amqp_cstring_bytes("capabilities");
    properties[0].value.kind = AMQP_FIELD_KIND_TABLE;
    properties[0].value.value.table.num_entries = 1;
    properties[0].value.value.table.entries = capabilities;
    properties[1].key = amqp_cstring_bytes("connection_name");
    properties[1].value.kind = AMQP_FIELD_KIND_UTF8;
    properties[1].value.value.bytes = amqp_cstring_bytes(connection_name);
    amqp_table_t table;
    table.num_entries = 2;
    table.entries = properties;
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, &table,
                                      AMQP_SASL_METHOD_PLAIN, user, password);
}

int spotguard_poll2(int socket_fd, int wake_fd, int want_write, int timeout_ms) {
    struct pollfd fds[2];
    fds[0].fd = socket_fd; fds[0].events = POLLIN | (want_write ? POLLOUT : 0); fds[0].revents = 0;
    fds[1].fd = wake_fd;   fds[1].events = POLLIN; fds[1].revents = 0;
    int n = poll(fds, 2, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -1;
    int out = 0;
    if (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) out |= 1;
    if (fds[1].revents & POLLIN) out |= 2;
    if (fds[0].revents & POLLOUT) out |= 4;
    return out;
}

int spotguard_writable(int socket_fd) {
    struct pollfd fd;
    fd.fd = socket_fd; fd.events = POLLOUT; fd.revents = 0;
    return poll(&fd, 1, 0) == 1 && (fd.revents & POLLOUT) ? 1 : 0;
}

int spotguard_wake_pipe(int fds[2]) {
    return pipe2(fds, O_NONBLOCK | O_CLOEXEC);
}

void spotguard_shutdown_socket(int socket_fd) {
    shutdown(socket_fd, SHUT_RDWR);
}
