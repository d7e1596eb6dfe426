# netweave: the two commands of the README, and a few more.
.PHONY: setup run test unit demo bench clean install

setup:
	@bash scripts/setup.sh

run: setup
	@bash scripts/ovs.sh
	@bash scripts/run.sh

test: setup
	@bash scripts/ovs.sh >/dev/null
	@bash scripts/test.sh

unit: setup
	.venv/bin/python -m pytest tests/unit -q -p no:cacheprovider

bench: setup
	.venv/bin/python -m bench

# netweave as a service: a venv in /opt/netweave (pip install .), the systemd units in
# /etc/systemd/system, /etc/netweave/netweave.toml if absent. PREFIX= / SYSCONFDIR= to move them.
install:
	@bash scripts/install.sh

clean:
	rm -rf .venv build *.egg-info

demo: setup
	@bash scripts/ovs.sh >/dev/null
	.venv/bin/python -m topologies.demo
