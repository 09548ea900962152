#!/bin/sh
# Patroni's post_bootstrap hook: $1 is a connection string to the new primary as the superuser.
set -eu
psql "$1" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE spotguard"
