#ifndef SPOTGUARD_CRABBITMQ_SHIM_H
#define SPOTGUARD_CRABBITMQ_SHIM_H
#include <sys/time.h>
#if __has_include(<rabbitmq-c/amqp.h>)   /* rabbitmq-c >= 0.12: headers under rabbitmq-c/ */
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#include <rabbitmq-c/framing.h>
#else                                     /* Debian 12: rabbitmq-c 0.11, /usr/include/amqp.h */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <amqp_framing.h>
#endif
#endif
