#!/bin/sh
# Seed 001's "world's stupidest plugin": it reads what the node sends and never answers, so the
# node must give up on it after the startup timeout.  (Kept quiet: it writes nothing anywhere.)
cat > /dev/null
