#include "variants.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <linux/btf.h>
#include <errno.h>
#include <string.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include "wstrace.h"
#include "wstrace_ext.skel.h"

namespace wstrace {
namespace {

bool capturing = false;
std::string captured;

int PrintLibbpf(enum libbpf_print_level level, const char* fmt, va_list args) {
  static const bool debug = getenv("WSTRACE_DEBUG") != nullptr;
  if (capturing && level <= LIBBPF_INFO) {
    // A verifier log comes in one message, often longer than any fixed buffer.
    va_list copy;
    va_copy(copy, args);
    int n = vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    if (n > 0) {
      std::string text(static_cast<size_t>(n) + 1, '\0');
      va_copy(copy, args);
      vsnprintf(text.data(), text.size(), fmt, copy);
      va_end(copy);
      text.resize(static_cast<size_t>(n));
      captured += text;
    }
    if (captured.size() > 262144) captured.erase(0, captured.size() - 131072);
  }
  return debug ? vfprintf(stderr, fmt, args) : 0;
}

// The verifier's verdict on the last program it refused: the program's name
// and the last line of its log before "processed N insns", if it wrote one.
std::string VerifierVerdict() {
  size_t end = captured.rfind("-- END PROG LOAD LOG --");
  if (end == std::string::npos) return "";
  size_t begin = captured.rfind("-- BEGIN PROG LOAD LOG --", end);
  size_t from = begin == std::string::npos ? 0 : begin;
  std::string last, line;
  for (char c : captured.substr(from, end - from)) {
    if (c == '\n') {
      if (!line.empty() && line.find("processed ") != 0 && line.find("-- BEGIN") == std::string::npos) last = line;
      line.clear();
    } else {
      line += c;
    }
  }
  if (!line.empty() && line.find("processed ") != 0) last = line;
  // libbpf names the program just before the log: "prog 'NAME': -- BEGIN PROG LOAD LOG --".
  size_t name = begin == std::string::npos ? std::string::npos : captured.rfind("prog '", begin);
  if (name == std::string::npos || last.empty()) return last;
  size_t quote = captured.find('\'', name + 6);
  return captured.substr(name + 6, quote - name - 6) + ": " + last;
}

// Every map the core object also has is the core's, so counts land in one place.
int ShareMaps(struct bpf_object* ext, struct bpf_object* core) {
  struct bpf_map* m;
  bpf_object__for_each_map(m, ext) {
    const char* name = bpf_map__name(m);
    if (name[0] == '.') continue;  // .rodata/.bss are per object
    struct bpf_map* theirs = bpf_object__find_map_by_name(core, name);
    if (!theirs) continue;
    int err = bpf_map__reuse_fd(m, bpf_map__fd(theirs));
    if (err) return err;
  }
  return 0;
}

// One attempt: returns "" on success (h filled), else why it failed.
std::string TryExt(const VariantDef& v, struct bpf_object* core, const Filters& filters, HookState& h) {
  struct wstrace_ext_bpf* ext = wstrace_ext_bpf__open();
  if (!ext) return "cannot open the BPF object: " + ErrnoText(errno);
  ApplyFilters(ext->rodata, filters);
  struct bpf_program* p;
  bpf_object__for_each_program(p, ext->obj) {
    bool wanted = false;
    for (const char* name : v.programs) wanted = wanted || strcmp(bpf_program__name(p), name) == 0;
    bpf_program__set_autoload(p, wanted);
  }
  int err = ShareMaps(ext->obj, core);
  if (err) {
    wstrace_ext_bpf__destroy(ext);
    return "cannot share maps: " + ErrnoText(err);
  }
  std::string verdict;
  err = LoadCapturing([ext] { return wstrace_ext_bpf__load(ext); }, &verdict);
  if (err) {
    std::string why = "load failed: " + ErrnoText(err);
    if (!verdict.empty()) why += "; verifier: " + verdict;
    wstrace_ext_bpf__destroy(ext);
    return why;
  }
  for (const char* name : v.programs) {
    struct bpf_program* prog = bpf_object__find_program_by_name(ext->obj, name);
    struct bpf_link* link = prog ? bpf_program__attach(prog) : nullptr;
    int aerr = prog ? static_cast<int>(libbpf_get_error(link)) : -ENOENT;
    if (aerr) {
      for (struct bpf_link* l : h.links) bpf_link__destroy(l);
      h.links.clear();
      wstrace_ext_bpf__destroy(ext);
      return std::string("attach of ") + name + " failed: " + ErrnoText(aerr);
    }
    h.links.push_back(link);
  }
  h.ext = ext;
  h.variant = v.name;
  return "";
}

// A variant of the core object: its programs are already loaded (or PlanCore
// said why not), only attached here.
std::string TryCore(const SignalDef& s, const VariantDef& v, struct bpf_object* core, const Unloaded& unloaded,
                    HookState& h) {
  for (const char* name : v.programs) {
    struct bpf_program* prog = bpf_object__find_program_by_name(core, name);
    if (prog && bpf_program__fd(prog) < 0) {
      auto it = unloaded.find(std::string(s.name) + "/" + v.name);
      return it == unloaded.end() ? "not loaded" : it->second;
    }
  }
  for (const char* name : v.programs) {
    struct bpf_program* prog = bpf_object__find_program_by_name(core, name);
    struct bpf_link* link = prog ? bpf_program__attach(prog) : nullptr;
    int err = prog ? static_cast<int>(libbpf_get_error(link)) : -ENOENT;
    if (err) {
      for (struct bpf_link* l : h.links) bpf_link__destroy(l);
      h.links.clear();
      return std::string("attach to ") + v.hook + " failed: " + ErrnoText(err);
    }
    h.links.push_back(link);
  }
  h.variant = v.name;
  return "";
}

}  // namespace

std::string ErrnoText(int err) {
  if (err < 0) err = -err;
  // The kernel's internal ENOTSUPP leaks out of BPF attach; libc has no text for it.
  if (err == 524) return "not supported for this function by this kernel (ENOTSUPP, errno 524)";
  return std::string(strerror(err)) + " (errno " + std::to_string(err) + ")";
}

void InstallLibbpfPrint() { libbpf_set_print(PrintLibbpf); }

int LoadCapturing(const std::function<int()>& load, std::string* verdict) {
  captured.clear();
  capturing = true;
  int err = load();
  capturing = false;
  *verdict = err ? VerifierVerdict() : "";
  captured.clear();
  return err;
}

// name: one tracepoint, or several as "a, b, c" (a hook of several programs): all must have BTF.
bool KernelTypes::HasTracepoint(const std::string& name) const {
  if (!btf_) return false;
  size_t from = 0;
  while (from <= name.size()) {
    size_t comma = name.find(',', from);
    std::string one = name.substr(from, comma == std::string::npos ? std::string::npos : comma - from);
    one.erase(0, one.find_first_not_of(' '));
    if (btf__find_by_name_kind(btf_, ("btf_trace_" + one).c_str(), BTF_KIND_TYPEDEF) <= 0) return false;
    if (comma == std::string::npos) break;
    from = comma + 1;
  }
  return true;
}

Unloaded PlanCore(const std::vector<SignalDef>& signals, struct bpf_object* core,
                  const std::map<std::string, std::string>& force, const KernelTypes& kernel,
                  const std::string& btfRefused) {
  Unloaded unloaded;
  struct bpf_program* p;
  bpf_object__for_each_program(p, core) bpf_program__set_autoload(p, false);
  // Not a hook: the loader runs it once per CPU (Tracer::PublishCpuOffsets).
  if (struct bpf_program* pub = bpf_object__find_program_by_name(core, "wst_publish_offset"))
    bpf_program__set_autoload(pub, true);
  for (const SignalDef& s : signals) {
    auto forced = force.find(s.name);
    bool chosen = false;
    for (const VariantDef& v : s.variants) {
      if (!v.core) continue;
      std::string key = std::string(s.name) + "/" + v.name, why;
      bool btf = strcmp(v.name, "tp_btf") == 0;
      if (forced != force.end() && forced->second != v.name)
        why = "not tried (" + forced->second + " forced)";
      else if (chosen)
        why = "not loaded (an earlier variant was)";
      else if (v.needs && !kernel.Has(*v.needs))
        why = v.needs->absent;
      else if (btf && !kernel.HasTracepoint(v.hook))
        why = "this kernel has no BTF for tracepoint " + std::string(v.hook) + " (btf_trace_" + v.hook + ")";
      else if (btf && !btfRefused.empty())
        why = btfRefused;
      if (!why.empty()) {
        unloaded[key] = why;
        continue;
      }
      chosen = true;
      for (const char* name : v.programs) {
        struct bpf_program* prog = bpf_object__find_program_by_name(core, name);
        if (prog) bpf_program__set_autoload(prog, true);
      }
    }
  }
  return unloaded;
}

bool LoadsBtfTracepoints(struct bpf_object* core) {
  struct bpf_program* p;
  bpf_object__for_each_program(p, core) {
    if (bpf_program__autoload(p) && bpf_program__type(p) == BPF_PROG_TYPE_TRACING) return true;
  }
  return false;
}

long KernelTypes::EnumValue(const char* enumerator) const {
  if (!btf_) return -1;
  for (uint32_t id = 1; id < btf__type_cnt(btf_); id++) {
    const struct btf_type* t = btf__type_by_id(btf_, id);
    if (!btf_is_enum(t)) continue;
    for (int i = 0; i < btf_vlen(t); i++) {
      if (strcmp(btf__name_by_offset(btf_, btf_enum(t)[i].name_off), enumerator) == 0) return btf_enum(t)[i].val;
    }
  }
  return -1;
}

KernelTypes::KernelTypes() : btf_(btf__load_vmlinux_btf()) {}

KernelTypes::~KernelTypes() { btf__free(btf_); }

bool KernelTypes::Has(const KernelCheck& c) const {
  if (!btf_) return false;
  int kind = c.isEnum ? BTF_KIND_ENUM : BTF_KIND_STRUCT;
  int id = btf__find_by_name_kind(btf_, c.type, kind);
  if (id <= 0) return false;
  const struct btf_type* t = btf__type_by_id(btf_, id);
  for (int i = 0; i < btf_vlen(t); i++) {
    uint32_t name = c.isEnum ? btf_enum(t)[i].name_off : btf_members(t)[i].name_off;
    if (strcmp(btf__name_by_offset(btf_, name), c.member) == 0) return true;
  }
  return false;
}

HookState AttachSignal(const SignalDef& signal, struct bpf_object* core, const Filters& filters,
                       const std::string& force, const KernelTypes& kernel, const Unloaded& unloaded) {
  HookState h;
  h.signal = signal.name;
  std::string tried, hooks;
  for (const VariantDef& v : signal.variants) {
    if (!force.empty() && force != v.name) continue;
    // A blind signal names every hook point it tried.
    if (hooks.find(v.hook) == std::string::npos) hooks += (hooks.empty() ? "" : ", ") + std::string(v.hook);
    std::string why;
    if (v.needs && !kernel.Has(*v.needs))
      why = v.needs->absent;
    else
      why = v.core ? TryCore(signal, v, core, unloaded, h) : TryExt(v, core, filters, h);
    if (why.empty()) {
      h.hook = v.hook;
      return h;
    }
    tried += (tried.empty() ? "" : "; ") + std::string(v.name) + ": " + why;
  }
  h.hook = hooks.empty() && !signal.variants.empty() ? signal.variants.front().hook : hooks;
  h.error = tried.empty() ? (force == "none" ? "not tried (disabled)" : "no variant named " + force) : tried;
  return h;
}

void Detach(HookState& h) {
  for (struct bpf_link* l : h.links) bpf_link__destroy(l);
  h.links.clear();
  if (h.ext) wstrace_ext_bpf__destroy(static_cast<struct wstrace_ext_bpf*>(h.ext));
  h.ext = nullptr;
  if (h.error.empty()) h.error = "detached";
}

}  // namespace wstrace
