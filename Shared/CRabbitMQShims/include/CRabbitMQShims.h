#ifndef SPOTGUARD_CRABBITMQ_SHIMS_H
#define SPOTGUARD_CRABBITMQ_SHIMS_H
#include "../../CRabbitMQ/shim.h"

/* amqp_login is C-variadic, which Swift cannot call: PLAIN login with fixed arguments. */
amqp_rpc_reply_t spotguard_amqp_login_plain(amqp_connection_state_t state, const char *vhost,
                                            int channel_max, int frame_max, int heartbeat,
                                            const char *user, const char *password);

/* poll(2) the connection's socket and a wake-up eventfd; returns a bit set:
   1 = socket readable, 2 = wake-up fd readable, 0 = timeout, -1 = error. */
int spotguard_poll2(int socket_fd, int wake_fd, int timeout_ms);

/* A non-blocking, close-on-exec pipe used to wake a connection's thread out of poll(2). */
int spotguard_wake_pipe(int fds[2]);
#endif
