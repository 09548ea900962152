#define _GNU_SOURCE
#include "CRabbitMQShims.h"
#include <poll.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

amqp_rpc_reply_t spotguard_amqp_login_plain(amqp_connection_state_t state, const char *vhost,
                                            int channel_max, int frame_max, int heartbeat,
                                            const char *user, const char *password) {
    return amqp_login(state, vhost, channel_max, frame_max, heartbeat, AMQP_SASL_METHOD_PLAIN, user, password);
}

int spotguard_poll2(int socket_fd, int wake_fd, int timeout_ms) {
    struct pollfd fds[2];
    fds[0].fd = socket_fd; fds[0].events = POLLIN; fds[0].revents = 0;
    fds[1].fd = wake_fd;   fds[1].events = POLLIN; fds[1].revents = 0;
    int n = poll(fds, 2, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -1;
    int out = 0;
    if (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) out |= 1;
    if (fds[1].revents & POLLIN) out |= 2;
    return out;
}

int spotguard_wake_pipe(int fds[2]) {
    return pipe2(fds, O_NONBLOCK | O_CLOEXEC);
}
