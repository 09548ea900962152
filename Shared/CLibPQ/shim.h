#ifndef SPOTGUARD_CLIBPQ_SHIM_H
#define SPOTGUARD_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
