# kmsctl build, test and benchmark entry points. `make test` is what CI runs.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all build test unit e2e bench bench-ansible bench-recovery bench-10k lint proto lab demo clean

all: build

## build: the kmsctl and kmsim (Key Manager simulator) binaries in ./bin
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

## test: vet, unit and conformance tests, then the Docker end-to-end suite
test: lint unit e2e

## unit: fast tests on fakes and on in-process SSH/KMS servers, with the race detector
unit:
	$(GO) test -race -count=1 -timeout 30m ./...

## e2e: the real kmsctl binary against Debian containers running systemd and sshd
e2e: build
	$(GO) test -tags e2e -count=1 -timeout 60m -v ./e2e/...

## e2e-image: build the Debian test-host image (debootstrap; skipped when its recipe's tag exists)
.PHONY: e2e-image
e2e-image:
	./e2e/image/build.sh

## lab: a local Key Manager cluster to practise on: LAB_HOSTS (default 3) test-host containers
## running the simulator as minkms.service, joined, administered from ./lab/ (e2e/lab.sh kms);
## lab-down removes the containers, their network and ./lab/
LAB_HOSTS ?= 3
.PHONY: lab-down
lab: build
	./e2e/lab.sh kms $(LAB_HOSTS)
lab-down:
	./e2e/lab.sh down

## demo: make lab with 3 nodes, then idempotence, --check --diff and each node's view of the
## cluster (e2e/demo.sh); KEEP=1 leaves the lab up, the same as make lab
demo:
	./e2e/demo.sh

## bench: transport benchmark against OpenSSH (prints figures)
bench: build
	./bench/ssh.sh
bench-ansible: build
	./bench/ansible/run.sh
## bench-recovery: recover node vs the vendor's steps by hand, in a lab of its own (prints figures)
bench-recovery: build
	./bench/recovery/run.sh
## bench-10k: backup, recover cluster and drill (onto the lab's scratch1) on a lab cluster
## holding 10,000 keys (prints figures)
bench-10k: build
	./bench/keys10k/run.sh

## lint: gofmt and go vet
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...

## proto: regenerate kms/pb from its .proto files (needs protoc with the well-known types in
## /usr/include: apt-get install protobuf-compiler; and protoc-gen-go v1.36.12:
## go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12)
PROTO_INCLUDE ?= /usr/include
proto:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc -I . -I $(PROTO_INCLUDE) --go_out=. --go_opt=paths=source_relative kms/pb/*.proto

clean:
	rm -rf $(BIN)
