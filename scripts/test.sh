#!/usr/bin/env bash
# make test: the whole suite, in two pytest processes. The OpenFlow tests run
# os-ken in-process, which needs eventlet's monkey-patching, and that hides
# select.poll, which Mininet needs: the Mininet tests get a process of their own.
set -u
cd "$(dirname "$0")/.."
rc=0
.venv/bin/python -m pytest tests -q -p no:cacheprovider --ignore=tests/mininet "$@" || rc=1
.venv/bin/python -m pytest tests/mininet -q -p no:cacheprovider "$@" || rc=1
exit $rc
