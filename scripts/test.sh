#!/usr/bin/env bash
# make test: the whole suite, in three pytest processes. The OpenFlow tests run
# os-ken in-process, which needs eventlet's monkey-patching; that hides
# select.poll, which Mininet needs, and it hung selenium's talk with chromedriver
# in the browser test: the Mininet and browser tests get processes of their own.
set -u
cd "$(dirname "$0")/.."
rc=0
.venv/bin/python -m pytest tests -q -p no:cacheprovider --ignore=tests/mininet --ignore=tests/browser "$@" || rc=1
NETWEAVE_NO_EVENTLET=1 .venv/bin/python -m pytest tests/browser -q -p no:cacheprovider "$@" || rc=1
NETWEAVE_NO_EVENTLET=1 .venv/bin/python -m pytest tests/mininet -q -p no:cacheprovider "$@" || rc=1
exit $rc
