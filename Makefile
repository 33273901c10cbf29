# BPF object and skeleton. The addon (binding.gyp) includes the skeleton.
CLANG ?= clang
BPFTOOL ?= $(shell command -v bpftool || echo /usr/sbin/bpftool)
ARCH := $(shell uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')
MULTIARCH := $(shell gcc -dumpmachine 2>/dev/null || echo $(shell uname -m)-linux-gnu)
OUT := bpf/.output

.PHONY: bpf clean
.SECONDARY:
bpf: $(OUT)/wstrace.skel.h $(OUT)/wstrace_ext.skel.h

# bpf/signals.gen.h is committed (written by `npm run gen` from src/signals/table.ts): no tsx at build time.
HEADERS := bpf/wstrace.h bpf/signals.gen.h bpf/kernel.h bpf/maps.h bpf/common.h

# The object's bytes are its identity (`wstrace --version` prints their hash): the
# prefix map keeps the build directory out of its debug info, so the same source
# makes the same object wherever it is built (a clone, the prebuild's scratch copy).
$(OUT)/%.bpf.o: bpf/%.bpf.c $(HEADERS) Makefile
	@mkdir -p $(OUT)
	$(CLANG) -g -O2 -Wall -fdebug-prefix-map=$(CURDIR)=. -target bpf -D__TARGET_ARCH_$(ARCH) \
		-I/usr/include/$(MULTIARCH) -Ibpf -c $< -o $@

$(OUT)/wstrace.skel.h: $(OUT)/wstrace.bpf.o
	$(BPFTOOL) gen skeleton $< name wstrace_bpf > $@.tmp && mv $@.tmp $@

$(OUT)/wstrace_ext.skel.h: $(OUT)/wstrace_ext.bpf.o
	$(BPFTOOL) gen skeleton $< name wstrace_ext_bpf > $@.tmp && mv $@.tmp $@

clean:
	rm -rf $(OUT)
