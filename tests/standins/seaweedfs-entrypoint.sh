#!/bin/sh
# The stand-in's entrypoint for chrislusf/seaweedfs's: `server …` runs `weed server` with the
# data folder and volume settings that image adds; anything else is weed's own command line.
set -eu
if [ "${1:-}" = server ]; then
    shift
    exec weed -logtostderr=true server -dir=/data -volume.max=0 -master.volumeSizeLimitMB=1024 "$@"
fi
exec weed "$@"
