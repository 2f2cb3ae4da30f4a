#!/bin/sh
# The stand-in's entrypoint for the official redis image's: `redis-server` or only its flags as
# the command, protected mode off (the network is the compose project's, as there), run in /data.
set -eu
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
    shift
    set -- redis-server "$@" --protected-mode no
fi
exec "$@"
