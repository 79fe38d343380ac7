# thingpipe — the commands a developer types. `make help` lists them.
GO ?= go
PKGS := ./...

# gosec is built in its own module context at a pinned version, not a `go tool` of this module: as a
# tool it would upgrade shared indirect modules in go.mod. The binary is cached per version under
# bin/ (git-ignored); the first `make lint` builds it. No rule is excluded: every finding is fixed or
# annotated `// #nosec Gxxx -- reason`, and the flags make both the rule and the reason mandatory
# (docs/security.md). Test files are not scanned (gosec's default).
GOSEC_VERSION ?= v2.30.0
GOSEC := bin/gosec-$(GOSEC_VERSION)/gosec
GOSEC_FLAGS ?= -quiet -nosec-require-rules -nosec-require-justification

.PHONY: help run rules test vet fmt-check lint bench build chaos

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## build the thingpipe binary into bin/
	$(GO) build -o bin/thingpipe ./cmd/thingpipe

run: build ## the main job: the whole system on this machine (thingpipe local; ARGS="--duration 1m" etc.)
	./bin/thingpipe local $(ARGS)

rules: build ## dry run: what each default rule does with each sample message
	./bin/thingpipe rules run deploy/rules testdata/messages

test: vet fmt-check ## every test: vet, gofmt, and the race-enabled test suite (needs moto_server)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# staticcheck runs with the chaos tag: the build is then a superset of the default one (only the long
# crash tests carry the tag), so they are checked too.
lint: vet fmt-check $(GOSEC) ## static analysis: staticcheck, gosec, and cfn-lint on the CloudFormation template
	$(GO) tool staticcheck -tags chaos $(PKGS)
	$(GOSEC) $(GOSEC_FLAGS) $(PKGS)
	@if ls deploy/cloudformation/*.yaml >/dev/null 2>&1; then cfn-lint deploy/cloudformation/*.yaml; fi

$(GOSEC):
	GOBIN=$(CURDIR)/$(dir $@) $(GO) install github.com/securego/gosec/v2/cmd/gosec@$(GOSEC_VERSION)

# The moto-backed benchmarks (pipeline/sqs, pipeline/kinesis) run one emulator call per iteration;
# BENCHTIME bounds them (and everything else) so `make bench` stays a few minutes on a small machine.
BENCHTIME ?= 1s
BENCH_LOAD ?= --devices 20 --rate 20 --duration 30s

bench: build ## Go benchmarks, then a 30s load run of the whole local system (see docs/bench.md)
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) -count=1 -timeout=20m $(PKGS)
	./bin/thingpipe bench $(BENCH_LOAD) --report bin/bench.json

chaos: ## the long crash tests too: four SIGKILLs under load, and one of three processes killed (needs moto_server)
	$(GO) test -tags chaos -count=1 -timeout 15m -v -run 'TestCrash|TestTakeover' ./chaos/
