#ifndef SPOTGUARD_CRABBITMQ_SHIMS_H
#define SPOTGUARD_CRABBITMQ_SHIMS_H
#include "../../CRabbitMQ/shim.h"

/* amqp_login is C-variadic, which Swift cannot call: PLAIN login with fixed arguments, which
   announces the connection.blocked capability and names the connection. */
amqp_rpc_reply_t spotguard_amqp_login_plain(amqp_connection_state_t state, const char *vhost,
                                            int channel_max, int frame_max, int heartbeat,
                                            const char *user, const char *password,
                                            const char *connection_name);

/* poll(2) the connection's socket (for reading, and for writing when want_write) and a
   wake-up pipe; returns a bit set: 1 = socket readable (or closed), 2 = wake-up readable,
   4 = socket writable, 0 = timeout, -1 = error. */
int spotguard_poll2(int socket_fd, int wake_fd, int want_write, int timeout_ms);

/* 1 when the socket's send buffer has room now (POLLOUT), else 0; never waits. */
int spotguard_writable(int socket_fd);

/* A non-blocking, close-on-exec pipe used to wake a connection's thread out of poll(2). */
int spotguard_wake_pipe(int fds[2]);

/* Breaks a connection whose thread is stuck in a send: the send then fails at once. */
void spotguard_shutdown_socket(int socket_fd);
#endif
