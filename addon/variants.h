// Hook variants: for each signal, the richest hook the running kernel allows.
#pragma once
#include <bpf/libbpf.h>

#include <cstdint>
#include <string>
#include <vector>

namespace wstrace {

// Filters every BPF object gets in its .rodata before load.
struct Filters {
  std::vector<uint16_t> ports;
  uint32_t netns = 0;
  uint64_t intervalNs = 0;
  bool countHits = false;
  uint64_t wakeupBytes = 65536;
  uint16_t ephemeralLow = 0, ephemeralHigh = 0;  // 0, 0: no folding
};

// One signal's live hook (or why none is live).
struct HookState {
  std::string signal;   // what it shows: reset_sent, syn_drop, accept_residency, ...
  std::string hook;     // kernel hook point(s)
  std::string variant;  // raw_tp, fentry, fexit, kprobe, ...; empty when blind
  std::string error;    // why not live, listing every variant tried
  std::vector<struct bpf_link*> links;
  void* ext = nullptr;  // the extra object instance holding its programs
  bool attached() const { return !links.empty(); }
};

struct Variant {
  const char* name;                   // fentry, kprobe, ...
  std::vector<const char*> programs;  // programs of bpf/wstrace_ext.bpf.c
};

// Tries each variant in order (or only `force`, when set; "none" tries none)
// in its own instance of the extra object, sharing the core object's maps.
HookState AttachBest(const std::string& signal, const std::string& hook, const std::vector<Variant>& order,
                     struct bpf_object* core, const Filters& filters, const std::string& force);

// Attaches programs of the core object as one signal's hook.
HookState AttachCore(const std::string& signal, const std::string& hook, struct bpf_object* core,
                     const std::vector<const char*>& programs);

void Detach(HookState& h);

// libbpf's messages: silent unless WSTRACE_DEBUG is set; the verifier's last
// words are kept while a variant loads so its failure can say why.
void InstallLibbpfPrint();

std::string ErrnoText(int err);

}  // namespace wstrace
