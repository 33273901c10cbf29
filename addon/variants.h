// Hook variants: for each signal, the richest hook the running kernel allows.
#pragma once
#include <bpf/libbpf.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

struct btf;

namespace wstrace {

// Filters every BPF object gets in its .rodata before load.
struct Filters {
  std::vector<uint16_t> ports;
  uint32_t netns = 0;
  // --cgroup: ids with their levels (a socket in one of them or below is wanted).
  std::vector<std::pair<uint64_t, uint32_t>> cgroups;
  uint64_t intervalNs = 0;
  bool countHits = false;
  uint64_t wakeupBytes = 65536;
  uint16_t ephemeralLow = 0, ephemeralHigh = 0;  // 0, 0: no folding
  uint64_t budgetCostNs = 0;                      // 1e9 / events per second; 0: no budget
  uint64_t budgetBurstNs = 1000000000ULL;
};

// Both BPF objects take the same filter globals (bpf/common.h); each skeleton
// has its own rodata type, so one template fills either.
template <typename Rodata>
void ApplyFilters(Rodata* r, const Filters& f) {
  size_t n = 0;
  const size_t cap = sizeof(r->filter_ports) / sizeof(r->filter_ports[0]);
  for (; n < f.ports.size() && n < cap; n++) r->filter_ports[n] = f.ports[n];
  r->filter_nports = n;
  r->filter_netns = f.netns;
  size_t c = 0;
  const size_t cgroupCap = sizeof(r->filter_cgroups) / sizeof(r->filter_cgroups[0]);
  for (; c < f.cgroups.size() && c < cgroupCap; c++) {
    r->filter_cgroups[c] = f.cgroups[c].first;
    r->filter_cgroup_levels[c] = f.cgroups[c].second;
  }
  r->filter_ncgroups = c;
  r->full_event_interval_ns = f.intervalNs;
  r->count_hits = f.countHits;
  r->wakeup_bytes = f.wakeupBytes;
  r->ephemeral_low = f.ephemeralLow;
  r->ephemeral_high = f.ephemeralHigh;
  r->budget_cost_ns = f.budgetCostNs;
  r->budget_burst_ns = f.budgetBurstNs;
}

// One signal's live hook (or why none is live).
struct HookState {
  std::string signal;   // what it shows: reset_sent, syn_drop, accept_residency, ...
  std::string hook;     // kernel hook point(s)
  std::string variant;  // raw_tp, fentry, fexit, kprobe, ...; empty when blind
  std::string error;    // why not live, listing every variant tried
  std::vector<struct bpf_link*> links;
  void* ext = nullptr;  // the extra object instance holding its programs
  // Live through another signal's programs, its own loaded (as `standsDown`)
  // but detached: see Tracer::StandDown.
  std::string standsDown;
  bool attached() const { return !links.empty() || !standsDown.empty(); }
};

// A fact about the running kernel, read from its BTF.
struct KernelCheck {
  bool isEnum;         // enum `type` has enumerator `member`; else struct `type` has field `member`
  const char* type;
  const char* member;
  const char* absent;  // what it means when missing: the start of an error
};

// One way to hook a signal (src/signals/table.ts HookVariant).
struct VariantDef {
  const char* name;                   // raw_tp, fentry, kprobe, ...
  bool core;                          // programs of the core object, else of bpf/wstrace_ext.bpf.c
  const char* hook;                   // kernel hook point(s)
  std::vector<const char*> programs;  // attached all or none
  std::optional<KernelCheck> needs;   // tried only where the kernel has this
  int switchOffset = -1;              // field of struct wst_switches set when this variant is live, or -1
};

// One signal and its variants, best first (src/signals/table.ts SignalSpec).
struct SignalDef {
  const char* name;
  std::vector<VariantDef> variants;
  std::optional<KernelCheck> onlyWithout;  // attached only where the kernel lacks this, unless forced
  int switchOffset;                        // field of struct wst_switches set when live, or -1
};

struct NamedValue {
  const char* name;
  long value;
};

// The kernel's BTF, loaded once for every check of one attach pass.
class KernelTypes {
 public:
  KernelTypes();
  ~KernelTypes();
  KernelTypes(const KernelTypes&) = delete;
  KernelTypes& operator=(const KernelTypes&) = delete;
  bool Has(const KernelCheck& c) const;
  // The BTF type libbpf attaches a tp_btf program by: typedef btf_trace_<tracepoint>.
  bool HasTracepoint(const std::string& name) const;
  // The value of an enumerator of any enum, named or not (the SNMP MIB
  // numbers are an anonymous enum whose order changes between kernels); -1
  // when the kernel has none by that name.
  long EnumValue(const char* enumerator) const;

 private:
  struct btf* btf_;
};

// Why a core variant's programs were not loaded, by "signal/variant".
using Unloaded = std::map<std::string, std::string>;

// Before the core object loads: of each signal's core variants only the
// first the kernel can take (or the forced one) is loaded, so a tracepoint
// this kernel lacks or a variant not used costs no verification. With
// `btfRefused` set, tp_btf variants are not loaded, for that reason.
Unloaded PlanCore(const std::vector<SignalDef>& signals, struct bpf_object* core,
                  const std::map<std::string, std::string>& force, const KernelTypes& kernel,
                  const std::string& btfRefused);

// True when PlanCore chose a tp_btf program of the core object.
bool LoadsBtfTracepoints(struct bpf_object* core);

// Tries each variant in order (or only `force`, when set; "none" tries none).
// Core variants attach programs of the core object (those PlanCore did not
// load say why); the others load their own instance of the extra object,
// sharing the core object's maps.
HookState AttachSignal(const SignalDef& signal, struct bpf_object* core, const Filters& filters,
                       const std::string& force, const KernelTypes& kernel, const Unloaded& unloaded);

void Detach(HookState& h);

// libbpf's messages: silent unless WSTRACE_DEBUG is set; the verifier's last
// words are kept while a variant loads so its failure can say why.
void InstallLibbpfPrint();

// Runs a load with libbpf's messages kept: on failure, the verifier's last
// words ("" if it wrote none).
int LoadCapturing(const std::function<int()>& load, std::string* verdict);

std::string ErrnoText(int err);

}  // namespace wstrace
