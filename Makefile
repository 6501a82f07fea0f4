# qnetd: a corosync-qnetd for Home Assistant. See README.md.
VERSION ?= $(shell sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' config.yaml 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/qnetd-addon/qnetd/internal/version.AddOn=$(or $(VERSION),dev)
DATA ?= $(CURDIR)/.data

.PHONY: build run test fuzz clean

build:
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/qnetd ./cmd/qnetd
	ln -sf qnetd bin/corosync-qnetd
	ln -sf qnetd bin/corosync-qnetd-certutil
	ln -sf qnetd bin/corosync-qnetd-tool

# Run what users get, locally: qnetd, the status page on 127.0.0.1:8403,
# the pairing endpoint on port 2222; data in ./.data (see scripts/run-local.sh).
run: build
	DATA=$(DATA) ./scripts/run-local.sh

# Every test, as CI runs it (installs what it needs; root for the real-peer rig).
test:
	./scripts/test.sh

# Short fuzzing of every decoder (FUZZTIME per target).
FUZZTIME ?= 30s
FUZZPKGS = $(sort $(dir $(shell grep -rl --include='*_test.go' '^func Fuzz' qnetd internal)))
fuzz:
	for p in $(FUZZPKGS); do \
	  for t in $$(go test ./$$p -list '^Fuzz' | grep ^Fuzz); do \
	    go test ./$$p -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done; done

clean:
	rm -rf bin .test-out

# Ours against Debian's corosync-qnetd on loopback, same run, every workload
# of issue #7 (~15 min on 2 cores; needs corosync-qnetd and libnss3-tools).
# Prints the markdown table; bench.md and bench.json go to BENCHOUT.
# qnetd-bench is its own binary so that the add-on image does not carry it;
# it starts the bin/qnetd beside it as ours.
.PHONY: bench
BENCHOUT ?= $(CURDIR)/.test-out/bench
BENCHFLAGS ?=
bench: build
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/qnetd-bench ./cmd/qnetd-bench
	./bin/qnetd-bench all -out $(BENCHOUT) $(BENCHFLAGS)
