# maillab.mailserver: one command brings a level up, one runs every test.
#   make up [LEVEL=1|2|3|challenge]   make test   make down   make purge
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The highest level built so far.
LEVEL ?= challenge
# The levels: the keys of the level table (mailserver_levels in the common
# role's defaults), the one place that says what each level runs.
LEVELS := $(shell sed -n '/^mailserver_levels:/,/^[^ ]/s/^  "\{0,1\}\([0-9a-z]*\)"\{0,1\}: .*/\1/p' roles/common/defaults/main.yml)
SCENARIOS ?= level1 level2 remote level3 default public
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Mitogen (requirements.txt) runs the modules of a play in one kept Python
# per host instead of a new one per task: a warm re-run of the full stack in
# about half the time. MITOGEN=0 runs Ansible's stock linear strategy.
MITOGEN ?= 1
ifeq ($(MITOGEN),1)
export ANSIBLE_STRATEGY_PLUGINS := $(CURDIR)/scripts/strategy
export ANSIBLE_STRATEGY := mitogen_linear
endif
PLAYBOOK = $(if $(filter challenge,$(LEVEL)),challenge,level$(LEVEL))
empty :=
LEVEL_CHOICES := $(subst $(empty) $(empty),|,$(LEVELS))
ANSIBLE_ARGS ?=

.PHONY: help venv deps up down purge rebuild test lint unit molecule bench levels
.PHONY: backup restore dns test-multihost

help:
	@echo "make up [LEVEL=$(LEVEL_CHOICES)]     bring the lab stack up (default: level $(LEVEL))"
	@echo "make test                 lint, unit tests and every single-host molecule scenario"
	@echo "make test-multihost       the multihost scenario (four test hosts with their own engines)"
	@echo "make down                 stop and remove the containers; volumes (mail) kept"
	@echo "make purge                remove containers AND volumes: all stored mail is deleted"
	@echo "make rebuild              rebuild every image with Debian's latest updates"
	@echo "make bench [LEVEL=...]    throughput, latency, provisioning and footprint (after make up)"
	@echo "make backup [BACKUP_DIR=...]  one archive of the running stack (default /var/backups/maillab/default)"
	@echo "make restore BACKUP=...   restore an archive (converges the stack to its level first)"
	@echo "make dns                  print the DNS records of every hosted domain (zone files)"

# The virtualenv, re-made when requirements.txt changes.
$(BIN)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is missing: apt-get install python3 python3-venv" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "cannot create $(VENV): apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	@touch $@

venv: $(BIN)/.installed

# Debian packages the tests need: chromium for the web UI test (no browser
# download works on air-gapped hosts; Playwright drives Debian's build),
# testssl.sh for the TLS policy test, iproute2 for the test hosts in network
# namespaces; openssh-server, sudo and python3-docker for the remote scenario
# (this machine as a Docker host over SSH: its own sshd on 127.0.0.1:2222, a
# deploy user with sudo, Debian's Python with the Docker SDK on the target);
# pebble (an ACME test server, offline) for the ACME test of the level 3
# scenario; bind9-utils for named-checkzone, which the unit tests of the DNS zone
# (tests/unit/plugins/module_utils/test_dns_zone.py) load every zone with;
# fuse-overlayfs, iptables and dockerd for the multihost scenario's hosts
# (each runs its own Docker Engine in a network namespace).
# Each entry is path:package, the package installed when the path is missing
# (with a policy-rc.d that keeps the packages' services, sshd's, from starting).
DEB_DEPS := /usr/bin/chromium:chromium /usr/bin/testssl:testssl.sh /usr/bin/ip:iproute2 \
	/usr/sbin/sshd:openssh-server /usr/bin/sudo:sudo /usr/lib/python3/dist-packages/docker/__init__.py:python3-docker \
	/usr/bin/named-checkzone:bind9-utils /usr/bin/pebble:pebble \
	/usr/bin/fuse-overlayfs:fuse-overlayfs /usr/sbin/iptables:iptables /usr/sbin/dockerd:docker.io
deps:
	@missing=; for dep in $(DEB_DEPS); do [ -e "$${dep%%:*}" ] || missing="$$missing $${dep#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run 'apt-get install$$missing' as root)" >&2; exit 1; fi; \
	  echo "installing Debian's$$missing for the tests"; \
	  policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then policy=/usr/sbin/policy-rc.d; \
	    printf '#!/bin/sh\n# make deps: start no service while installing\nexit 101\n' > $$policy; chmod 755 $$policy; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  rc=$$?; [ -z "$$policy" ] || rm -f $$policy; \
	  [ $$rc = 0 ] || { echo "apt-get install$$missing failed" >&2; exit 1; }; \
	fi

up: venv
	@case "$(LEVEL)" in $(LEVEL_CHOICES)) ;; *) echo "LEVEL must be one of $(LEVEL_CHOICES) (got '$(LEVEL)')" >&2; exit 2;; esac
	$(BIN)/ansible-playbook playbooks/$(PLAYBOOK).yml $(ANSIBLE_ARGS)

down: venv
	$(BIN)/ansible-playbook playbooks/down.yml $(ANSIBLE_ARGS)

purge: venv
	@echo "make purge removes the containers AND the volumes: every stored message and queued mail is deleted."
	$(BIN)/ansible-playbook playbooks/down.yml -e mailserver_purge_volumes=true $(ANSIBLE_ARGS)

rebuild: venv
	$(BIN)/ansible-playbook playbooks/$(PLAYBOOK).yml -e mailserver_image_refresh=$$(date +%Y%m%d%H%M%S) $(ANSIBLE_ARGS)

# Figures for the running stack (make up first); BENCH_ARGS adds options,
# e.g. BENCH_ARGS="--messages 1000 --skip-cold".
BENCH_ARGS ?=
bench: venv
	$(BIN)/python scripts/bench.py --level $(LEVEL) $(BENCH_ARGS)

# One archive of the running stack (mail, queue, database, DKIM keys, TLS);
# BACKUP_DIR overrides where it goes. make restore BACKUP=path restores one.
BACKUP_DIR ?=
BACKUP ?=
backup: venv
	$(BIN)/ansible-playbook playbooks/backup.yml $(if $(BACKUP_DIR),-e backup_dir="$(abspath $(BACKUP_DIR))") $(ANSIBLE_ARGS)

restore: venv
	@test -n "$(BACKUP)" || { echo "make restore BACKUP=/path/to/maillab-....tar (an archive written by make backup)" >&2; exit 2; }
	$(BIN)/ansible-playbook playbooks/restore.yml -e backup_archive="$(abspath $(BACKUP))" $(ANSIBLE_ARGS)

# The DNS records to publish for every hosted domain of the running stack,
# one zone file each (mailserver_config_dir/dns); ANSIBLE_ARGS adds options,
# e.g. ANSIBLE_ARGS="-e dns_ipv4=[203.0.113.25] -e dns_dnssec=true".
dns: venv
	$(BIN)/ansible-playbook playbooks/dns.yml $(ANSIBLE_ARGS)

# The levels as the Makefile reads them (a unit test compares them with the table).
levels:
	@echo $(LEVELS)

lint: venv
	$(BIN)/yamllint -s .
	$(BIN)/python scripts/role_docs.py --check
	$(BIN)/ansible-lint --profile production
	for p in playbooks/*.yml; do $(BIN)/ansible-playbook --syntax-check "$$p" || exit 1; done
	for p in level1 level2 level3 challenge; do $(BIN)/ansible-playbook --syntax-check maillab.mailserver.$$p || exit 1; done

unit: venv deps
	$(BIN)/python -m pytest -q tests/unit

molecule: venv deps
	for s in $(SCENARIOS); do $(BIN)/molecule test -s $$s || exit 1; done

test: lint unit molecule

# Beyond one host (molecule/multihost): four test hosts on this machine,
# each with its own Docker Engine; about 18 minutes after the single-host
# scenarios built the images. Not in make test: a cold make test takes about
# 55 minutes here, and both together would leave CI's 90 minutes little room.
test-multihost: venv deps
	$(BIN)/molecule test -s multihost
