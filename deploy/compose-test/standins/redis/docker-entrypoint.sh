#!/bin/sh
# redis-server runs as the redis user with protected mode off; anything
# else (redis-cli, sh) runs as given.
set -e
if [ "$1" = "redis-server" ]; then
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$@" --protected-mode no
fi
exec "$@"
