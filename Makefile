# studiorun: make demo, make test (see README.md).
GO ?= go
BIN := build/studiorun

.PHONY: all build demo deps images test lint fuzz bench clean

# Test and demo images, built from Debian packages and cached outside git.
IMAGES_DIR ?= $(or $(STUDIORUN_CACHE),$(HOME)/.cache/studiorun)/images

all: build

build:
	$(GO) build -o $(BIN) ./cmd/studiorun

# The studio from end to end (scripts/demo.sh): the three scripts' plans,
# then, as root, the SOE image, the fleet on libvirt, the roles over SSH,
# a file shared over NFS, and down. What it needs and lacks is installed
# first (.ci/deps) as root on Debian or Ubuntu.
demo: build
	bash scripts/demo.sh

# As root on Debian or Ubuntu: the packages the tests and the demo need,
# and libvirtd started.
deps:
	bash .ci/deps

# The Debian 12 base image (needs root: debootstrap) and the test ISO;
# build/debian-12-base.qcow2 links to the cached image for soe.star.
images:
	sh testdata/images/debian-base.sh $(IMAGES_DIR)
	sh testdata/images/test-iso.sh $(IMAGES_DIR)
	mkdir -p build
	ln -sf $(IMAGES_DIR)/debian-12-base.qcow2 build/debian-12-base.qcow2
	ln -sf $(IMAGES_DIR)/debian-12-base.qcow2.key build/debian-12-base.qcow2.key

test: lint build
	$(GO) test ./...
	$(BIN) test testdata scripts

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet ./...

fuzz:
	$(GO) test ./builtins -run '^$$' -fuzz '^FuzzEval$$' -fuzztime 60s

# Evaluation of 1000 hosts; up of 50 domains at --parallel 1 and 8 and a
# no-op up of the 3-host studio, on libvirt's test driver (needs libvirtd);
# issue 4's six tasks on 10 and 30 test hosts, then side by side with
# ansible-playbook (needs root and ansible); the SOE disk build side by side
# with Packer 1.6.6 (needs packer and make images); 50 libvirt domains side by
# side with Terraform's libvirt provider (built from the Go module proxy on
# the first run, cached).
bench: build
	$(GO) test ./builtins -run '^$$' -bench '^BenchmarkEvalStudio$$' -benchmem -count 5
	$(GO) test ./cmd/studiorun -run '^$$' -bench '^BenchmarkUp50Domains$$' -benchtime 3x -count 3
	$(GO) test ./cmd/studiorun -run '^$$' -bench '^BenchmarkNoopUpStudio3$$' -benchtime 20x -count 3
	$(GO) test ./builtins/ssh -run '^$$' -bench '^BenchmarkSixTasks$$' -benchtime 1x
	$(GO) test ./builtins/ssh -run '^$$' -bench '^BenchmarkUpload$$' -benchtime 3x -count 3
	bash testdata/bench/ansible_vs_studiorun.sh
	STUDIORUN_BIN=$(BIN) bash testdata/bench/packer_vs_studiorun.sh
	STUDIORUN_BIN=$(BIN) bash testdata/bench/terraform_vs_studiorun.sh

clean:
	rm -rf build
