.PHONY: test build demo generate

# The build stamps github.com/prometheus/common/version, which `flagwarden version` and
# flagwarden_build_info report.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
BRANCH   ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
VERSION_PKG := github.com/prometheus/common/version
LDFLAGS := -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Revision=$(REVISION) \
	-X $(VERSION_PKG).Branch=$(BRANCH) -X $(VERSION_PKG).BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)

build:
	go build -ldflags "$(LDFLAGS)" -o bin/flagwarden ./cmd/flagwarden

test:
	scripts/test.sh

demo:
	go run ./cmd/flagwarden demo

# Regenerates the Grafana dashboards and Prometheus rules (dashboards/, deploy/) from
# the mixin in dashboards/mixin.
generate:
	go generate ./dashboards/
