// The tracer object: open, configure, load and attach the BPF skeleton; drain
// the ring buffer on the JS thread (uv_poll on its epoll fd) and hand JS one
// Buffer per wake-up; read the counter maps; detach and free on close().
// No policy here: decoding and naming happen in src/kernel/.
#include "tracer.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <malloc.h>
#include <linux/btf.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "wstrace.h"
#include "wstrace.skel.h"
#include "hooks.gen.h"
#include "variants.h"
#include "wstrace_ext.skel.h"

namespace wstrace {
namespace {

// Upper bound of records handed to JS per wake-up, so a flood cannot hold the
// JS thread; the rest stays in the ring and the next loop turn takes it.
constexpr size_t kMaxBatchRecords = 8192;
constexpr int kBatchFull = -E2BIG;
constexpr size_t kBatchBytes = kMaxBatchRecords * sizeof(struct wst_event);
// A lone event waits at most this long for the drain timer.
constexpr uint64_t kDrainMs = 50;
constexpr double kMaxBudget = 1e9;  // events per second: one per nanosecond of budget

// The two summary maps and the slot the programs find the current one in.
// Shared with a drain running on the thread pool, so close() can release the
// tracer while a drain finishes with its own descriptors.
struct SummaryMaps {
  int slot = -1;
  int rows[2] = {-1, -1};
  int current = 0;  // which of rows[] is in the slot
  bool draining = false;
  SummaryMaps(int s, int a, int b) : slot(dup(s)), rows{dup(a), dup(b)} {}
  ~SummaryMaps() {
    for (int fd : {slot, rows[0], rows[1]})
      if (fd >= 0) close(fd);
  }
  SummaryMaps(const SummaryMaps&) = delete;
  SummaryMaps& operator=(const SummaryMaps&) = delete;
};

// Swaps the empty summary map into the slot and takes every row of the one
// it replaces. The slot update returns only once no program run that could
// still add to the old map is running (the kernel waits an RCU grace period
// for map-in-map updates), so each count is read once: none is lost or
// counted twice. Off the JS thread: that wait takes milliseconds.
class DrainWorker : public Napi::AsyncWorker {
 public:
  DrainWorker(Napi::Env env, std::shared_ptr<SummaryMaps> maps)
      : Napi::AsyncWorker(env, "wstrace:DrainSummaries"), maps_(std::move(maps)), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    uint32_t zero = 0;
    int next = 1 - maps_->current;
    if (bpf_map_update_elem(maps_->slot, &zero, &maps_->rows[next], BPF_ANY)) {
      SetError("failed to swap the summary maps: " + ErrnoText(errno));
      return;
    }
    int old = maps_->rows[maps_->current];
    maps_->current = next;
    keys_.resize(WST_SUMMARY_ROWS * sizeof(struct wst_summary_key));
    values_.resize(WST_SUMMARY_ROWS * sizeof(struct wst_summary_val));
    // The batch position: a bucket index for hash maps, sized for any map.
    uint64_t in = 0, out = 0;
    bool first = true;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    while (rows_ < WST_SUMMARY_ROWS) {
      uint32_t n = WST_SUMMARY_ROWS - rows_;
      int err = bpf_map_lookup_and_delete_batch(old, first ? nullptr : &in, &out,
                                                keys_.data() + rows_ * sizeof(struct wst_summary_key),
                                                values_.data() + rows_ * sizeof(struct wst_summary_val), &n, &opts);
      rows_ += n;
      if (err == -ENOENT) break;  // the last batch
      if (err) {
        SetError("failed to read the summary map: " + ErrnoText(err));
        return;
      }
      in = out;
      first = false;
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    maps_->draining = false;
    Napi::Object o = Napi::Object::New(env);
    o.Set("rows", Napi::Number::New(env, rows_));
    o.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys_.data(), rows_ * sizeof(struct wst_summary_key)));
    o.Set("values", Napi::Buffer<uint8_t>::Copy(env, values_.data(), rows_ * sizeof(struct wst_summary_val)));
    deferred_.Resolve(o);
  }

  void OnError(const Napi::Error& e) override {
    maps_->draining = false;
    deferred_.Reject(e.Value());
  }

 private:
  std::shared_ptr<SummaryMaps> maps_;
  Napi::Promise::Deferred deferred_;
  std::vector<uint8_t> keys_, values_;
  size_t rows_ = 0;
};

class Tracer : public Napi::ObjectWrap<Tracer> {
 public:
  static Napi::FunctionReference* constructor;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Tracer",
                       {
                           InstanceMethod<&Tracer::Hooks>("hooks"),
                           InstanceMethod<&Tracer::Counters>("counters"),
                           InstanceMethod<&Tracer::ProgramIds>("programIds"),
                           InstanceMethod<&Tracer::SkippedRuns>("skippedRuns"),
                           InstanceMethod<&Tracer::RouteState>("routeState"),
                           InstanceMethod<&Tracer::Flush>("flush"),
                           InstanceMethod<&Tracer::KeepPorts>("keepPorts"),
                           InstanceMethod<&Tracer::DrainSummaries>("drainSummaries"),
                           InstanceMethod<&Tracer::Close>("close"),
                       });
  }

  explicit Tracer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tracer>(info) {}
  ~Tracer() override { Release(); }

  // Runs open → set rodata → load → attach → poll. Throws with the step named.
  bool Start(Napi::Env env, const Napi::Object& opts) {
    Napi::Value ports = opts.Get("ports");
    Napi::Value netns = opts.Get("netns");
    Napi::Value ring = opts.Get("ringBytes");
    Napi::Value interval = opts.Get("fullEventIntervalNs");
    Napi::Value onBatch = opts.Get("onBatch");
    Napi::Value variants = opts.Get("variants");
    Napi::Value ephemeral = opts.Get("ephemeralPorts");
    Napi::Value budget = opts.Get("eventBudget");
    Napi::Value cgroups = opts.Get("cgroups");

    if (!ports.IsArray()) return TypeError(env, "options.ports must be an array of port numbers");
    Napi::Array portList = ports.As<Napi::Array>();
    if (portList.Length() > WST_MAX_PORTS)
      return TypeError(env, "options.ports holds at most " + std::to_string(WST_MAX_PORTS) + " ports");
    std::vector<uint16_t> portValues;
    for (uint32_t i = 0; i < portList.Length(); i++) {
      Napi::Value p = portList.Get(i);
      double v = p.IsNumber() ? p.As<Napi::Number>().DoubleValue() : -1;
      if (v < 1 || v > 65535 || v != static_cast<uint32_t>(v))
        return TypeError(env, "options.ports[" + std::to_string(i) + "] must be an integer from 1 to 65535");
      portValues.push_back(static_cast<uint16_t>(v));
    }
    if (!netns.IsNumber() || netns.As<Napi::Number>().DoubleValue() < 0 ||
        netns.As<Napi::Number>().DoubleValue() > 4294967295.0)
      return TypeError(env, "options.netns must be a namespace inode number (0 for all)");
    std::vector<std::pair<uint64_t, uint32_t>> cgroupValues;
    if (!cgroups.IsUndefined()) {
      const std::string what = "options.cgroups must be an array of at most " + std::to_string(WST_MAX_CGROUPS) +
                               " {id, level} (a cgroup2 directory's inode number and its depth)";
      if (!cgroups.IsArray() || cgroups.As<Napi::Array>().Length() > WST_MAX_CGROUPS) return TypeError(env, what);
      Napi::Array list = cgroups.As<Napi::Array>();
      for (uint32_t i = 0; i < list.Length(); i++) {
        Napi::Value c = list.Get(i);
        if (!c.IsObject()) return TypeError(env, what);
        Napi::Value id = c.As<Napi::Object>().Get("id"), level = c.As<Napi::Object>().Get("level");
        double idv = id.IsNumber() ? id.As<Napi::Number>().DoubleValue() : -1;
        double lv = level.IsNumber() ? level.As<Napi::Number>().DoubleValue() : -1;
        // Ids are inode numbers: whole, above 0, exact in a double below 2^53.
        if (idv < 1 || idv > 9007199254740991.0 || idv != std::floor(idv) || lv < 0 || lv > 65535 || lv != std::floor(lv))
          return TypeError(env, what);
        cgroupValues.emplace_back(static_cast<uint64_t>(idv), static_cast<uint32_t>(lv));
      }
    }
    if (!ring.IsNumber()) return TypeError(env, "options.ringBytes must be a number");
    uint32_t ringBytes = ring.As<Napi::Number>().Uint32Value();
    long page = sysconf(_SC_PAGESIZE);
    if (ringBytes < static_cast<uint32_t>(page) || (ringBytes & (ringBytes - 1)) != 0)
      return TypeError(env, "options.ringBytes must be a power of two of at least " + std::to_string(page));
    if (!interval.IsNumber() || interval.As<Napi::Number>().DoubleValue() < 0)
      return TypeError(env, "options.fullEventIntervalNs must be a non-negative number");
    if (!onBatch.IsFunction()) return TypeError(env, "options.onBatch must be a function");
    double perSecond = budget.IsUndefined() ? 0 : budget.IsNumber() ? budget.As<Napi::Number>().DoubleValue() : -1;
    if (!(perSecond >= 0 && perSecond <= kMaxBudget) || perSecond != std::floor(perSecond))
      return TypeError(env, "options.eventBudget must be a whole number of events per second from 0 (no budget) to 1e9");
    if (!variants.IsUndefined() && !variants.IsObject())
      return TypeError(env, "options.variants must be an object of signal: variant names");
    if (variants.IsObject()) {
      Napi::Object v = variants.As<Napi::Object>();
      Napi::Array keys = v.GetPropertyNames();
      for (uint32_t i = 0; i < keys.Length(); i++) {
        std::string key = keys.Get(i).As<Napi::String>();
        Napi::Value val = v.Get(key);
        if (!val.IsString()) return TypeError(env, "options.variants." + key + " must be a variant name");
        force_[key] = val.As<Napi::String>();
      }
    }
    filters_.ports = portValues;
    filters_.netns = netns.As<Napi::Number>().Uint32Value();
    filters_.cgroups = cgroupValues;
    filters_.intervalNs = static_cast<uint64_t>(interval.As<Napi::Number>().DoubleValue());
    filters_.countHits = opts.Get("countHits").ToBoolean();
    filters_.wakeupBytes = ringBytes / 4;
    // Each event uses up 1e9 / budget ns of a one-second bucket.
    filters_.budgetCostNs = perSecond > 0 ? static_cast<uint64_t>(std::ceil(1e9 / perSecond)) : 0;
    if (!ephemeral.IsUndefined()) {
      Napi::Array range = ephemeral.IsArray() ? ephemeral.As<Napi::Array>() : Napi::Array::New(env);
      double lo = range.Length() == 2 && range.Get(0u).IsNumber() ? range.Get(0u).As<Napi::Number>().DoubleValue() : -1;
      double hi = range.Length() == 2 && range.Get(1u).IsNumber() ? range.Get(1u).As<Napi::Number>().DoubleValue() : -1;
      if (lo < 1 || hi > 65535 || lo > hi || lo != static_cast<uint16_t>(lo) || hi != static_cast<uint16_t>(hi))
        return TypeError(env, "options.ephemeralPorts must be [low, high], ports with low <= high");
      filters_.ephemeralLow = static_cast<uint16_t>(lo);
      filters_.ephemeralHigh = static_cast<uint16_t>(hi);
    }

    kernel_ = std::make_unique<KernelTypes>();
    if (!Load(env, ringBytes)) return false;
    // The programs add summary rows to whichever map is in the slot: one must be before they run.
    uint32_t zero = 0;
    int first = bpf_map__fd(skel_->maps.summary_a);
    int err = bpf_map_update_elem(bpf_map__fd(skel_->maps.summary_slot), &zero, &first, BPF_ANY);
    if (err) return Fail(env, "failed to set up the summary maps: " + ErrnoText(errno));
    summaries_ = std::make_shared<SummaryMaps>(bpf_map__fd(skel_->maps.summary_slot), first,
                                               bpf_map__fd(skel_->maps.summary_b));
    void* mapped = mmap(nullptr, sizeof(struct wst_listening), PROT_READ | PROT_WRITE, MAP_SHARED,
                        bpf_map__fd(skel_->maps.listen_ports), 0);
    if (mapped == MAP_FAILED) return Fail(env, "failed to map the listening ports: " + ErrnoText(errno));
    listening_ = static_cast<volatile uint8_t*>(mapped);

    Attach();
    PublishCpuOffsets();
    kernel_.reset();
    // Loading parsed the kernel's BTF once per object (tens of MB, freed
    // again); hand that memory back rather than keep it for the agent's life.
    malloc_trim(0);

    rb_ = ring_buffer__new(bpf_map__fd(skel_->maps.events), OnRecord, this, nullptr);
    if (!rb_) return Fail(env, "failed to set up the ring buffer: " + ErrnoText(errno));

    callback_ = Napi::Persistent(onBatch.As<Napi::Function>());
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, kBatchBytes);
    batch_ = static_cast<uint8_t*>(ab.Data());
    batchBuf_ = Napi::Persistent(ab);
    context_ = new Napi::AsyncContext(env, "wstrace:Events");
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    poll_->data = this;
    err = uv_poll_init(loop, poll_, ring_buffer__epoll_fd(rb_));
    if (err == 0) err = uv_poll_start(poll_, UV_READABLE, OnReadable);
    if (err) {
      delete poll_;
      poll_ = nullptr;
      return Fail(env, std::string("failed to poll the ring buffer: ") + uv_strerror(err));
    }
    // The kernel side wakes the poll only when a quarter of the ring is
    // waiting; a trickle is taken by this timer (unref'd: the poll keeps the
    // loop alive while the tracer is open).
    drain_ = new uv_timer_t;
    drain_->data = this;
    uv_timer_init(loop, drain_);
    uv_timer_start(drain_, OnDrainTimer, kDrainMs, kDrainMs);
    uv_unref(reinterpret_cast<uv_handle_t*>(drain_));
    // While polling, the JS object must outlive its last JS reference.
    Ref();
    return true;
  }

 private:
  struct wstrace_bpf* skel_ = nullptr;
  struct ring_buffer* rb_ = nullptr;
  uv_poll_t* poll_ = nullptr;
  uv_timer_t* drain_ = nullptr;
  Napi::FunctionReference callback_;
  Napi::AsyncContext* context_ = nullptr;
  std::vector<HookState> hooks_;
  std::map<std::string, std::string> force_;
  Filters filters_;
  std::unique_ptr<KernelTypes> kernel_;  // the kernel's BTF, while loading and attaching
  Unloaded unloaded_;
  std::shared_ptr<SummaryMaps> summaries_;
  volatile uint8_t* listening_ = nullptr;  // struct wst_listening, mapped
  // One batch at a time, handed to JS as a view of batchBuf_: JS decodes it
  // before the callback returns (src/kernel/tracer.ts), so the memory is
  // reused for every batch instead of a new Buffer each time.
  Napi::Reference<Napi::ArrayBuffer> batchBuf_;
  uint8_t* batch_ = nullptr;
  size_t batchLen_ = 0;
  size_t batchRecords_ = 0;

  bool TypeError(Napi::Env env, const std::string& msg) {
    Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
    return false;
  }

  bool Fail(Napi::Env env, const std::string& msg, int code = 0) {
    Release();
    Napi::Error e = Napi::Error::New(env, msg);
    if (code) e.Set("errno", Napi::Number::New(env, code));
    e.ThrowAsJavaScriptException();
    return false;
  }

  std::string Forced(const std::string& signal) const {
    auto it = force_.find(signal);
    return it == force_.end() ? "" : it->second;
  }

  // The SNMP counters the programs read where they rise (syn_drop's
  // tracepoint route, resets received that no peer sent), as this kernel
  // numbers them (0: not found, and that reading is skipped).
  template <typename Rodata>
  static void SetMibIndexes(Rodata* r, const KernelTypes& kernel) {
    auto index = [&](const char* name) -> uint32_t {
      long v = kernel.EnumValue(name);
      return v > 0 && v < 512 ? static_cast<uint32_t>(v) : 0;
    };
    r->mib_listen_overflows = index("LINUX_MIB_LISTENOVERFLOWS");
    r->mib_listen_drops = index("LINUX_MIB_LISTENDROPS");
    r->mib_reqq_full_drop = index("LINUX_MIB_TCPREQQFULLDROP");
    r->mib_syncookies_sent = index("LINUX_MIB_SYNCOOKIESSENT");
    r->mib_abort_on_data = index("LINUX_MIB_TCPABORTONDATA");
    // TIME_WAITs by the kernel's count only where it counts them as they are
    // made: before ~5.18 a tw_kill flag chose the counter when one expired.
    if (!kernel.Has(KernelCheck{false, "inet_timewait_sock", "tw_kill", ""})) {
      r->mib_tw = index("LINUX_MIB_TIMEWAITED");
      r->mib_tw_killed = index("LINUX_MIB_TIMEWAITKILLED");
    }
    int ncpu = libbpf_num_possible_cpus();
    r->nr_cpus = ncpu > 0 ? static_cast<uint32_t>(ncpu) : 0;
  }

  // Opens, configures and loads the core object. A tp_btf program the
  // kernel refuses fails the whole object, so then it loads again with raw
  // tracepoints in their place, and the hooks say why.
  bool Load(Napi::Env env, uint32_t ringBytes) {
    std::string btfRefused;
    for (;;) {
      skel_ = wstrace_bpf__open();
      if (!skel_) return Fail(env, "failed to open BPF object: " + ErrnoText(errno));
      ApplyFilters(skel_->rodata, filters_);
      SetMibIndexes(skel_->rodata, *kernel_);
      int err = bpf_map__set_max_entries(skel_->maps.events, ringBytes);
      if (err) return Fail(env, "failed to size the ring buffer: " + ErrnoText(err));
      unloaded_ = PlanCore(kSignals, skel_->obj, force_, *kernel_, btfRefused);
      bool btf = LoadsBtfTracepoints(skel_->obj);
      std::string verdict;
      err = LoadCapturing([this] { return wstrace_bpf__load(skel_); }, &verdict);
      if (!err) return true;
      if (!btf || err == -EPERM || err == -EACCES)
        return Fail(env, "failed to load BPF programs: " + ErrnoText(err), -err);
      btfRefused = "load failed: " + ErrnoText(err) + (verdict.empty() ? "" : "; verifier: " + verdict);
      wstrace_bpf__destroy(skel_);
      skel_ = nullptr;
    }
  }

  // Runs wst_publish_offset once on each CPU, so each says its per-CPU
  // offset before any traffic: the first close in a namespace seeds every
  // CPU's TCPAbortOnData baseline from them. A CPU it cannot run on says it
  // the first time it traces a state change instead.
  void PublishCpuOffsets() {
    int fd = bpf_program__fd(skel_->progs.wst_publish_offset);
    int ncpu = libbpf_num_possible_cpus();
    if (fd < 0 || ncpu <= 0) return;
    for (int cpu = 0; cpu < ncpu; cpu++) {
      LIBBPF_OPTS(bpf_test_run_opts, opts, .flags = BPF_F_TEST_RUN_ON_CPU, .cpu = static_cast<__u32>(cpu));
      bpf_prog_test_run_opts(fd, &opts);
    }
  }

  // Each signal separately, in the table's order: one missing hook blinds one
  // signal only, and a richer variant that the kernel refuses falls back to
  // the next. Live signals that other programs must know of set a switch.
  void Attach() {
    const KernelTypes& kernel = *kernel_;
    struct wst_switches sw = {};
    for (const SignalDef& s : kSignals) {
      std::string force = Forced(s.name);
      // Covered by a portable hook on this kernel: nothing to attach, nothing to report.
      if (s.onlyWithout && force.empty() && kernel.Has(*s.onlyWithout)) continue;
      HookState h = AttachSignal(s, skel_->obj, filters_, force, kernel, unloaded_);
      if (!h.attached() && s.onlyWithout && !kernel.Has(*s.onlyWithout))
        h.error = std::string(s.onlyWithout->absent) + "; " + h.error;
      if (h.attached() && s.switchOffset >= 0) {
        uint32_t on = 1;
        memcpy(reinterpret_cast<char*>(&sw) + s.switchOffset, &on, sizeof on);
      }
      for (const VariantDef& v : s.variants) {
        if (!h.attached() || v.switchOffset < 0 || h.variant != v.name) continue;
        uint32_t on = 1;
        memcpy(reinterpret_cast<char*>(&sw) + v.switchOffset, &on, sizeof on);
      }
      hooks_.push_back(h);
    }
    if (sw.listen_drops_settled) StandDown("listen_overflow", "syn_drop");
    uint32_t zero = 0;
    bpf_map_update_elem(bpf_map__fd(skel_->maps.switches), &zero, &sw, BPF_ANY);
  }

  // A signal another one's live programs already see on every path (the ACK
  // stage, where syn_drop's tracepoint route is live): its own programs would
  // run on every freed packet only to return at their first test, so they
  // are detached (kept loaded) and the signal is reported live through the
  // other's hooks. Not when its variant is forced (the kernel matrix).
  void StandDown(const char* signal, const char* through) {
    const HookState* by = nullptr;
    for (const HookState& h : hooks_)
      if (h.signal == through && h.attached()) by = &h;
    if (!by || !Forced(signal).empty()) return;
    std::string variant = by->variant, hook = by->hook;
    for (HookState& h : hooks_) {
      if (h.signal != signal || h.links.empty()) continue;
      for (struct bpf_link* l : h.links) bpf_link__destroy(l);
      h.links.clear();
      h.standsDown = h.variant;
      h.variant = variant;
      h.hook = hook + " (" + through + "'s route)";
    }
  }

  static int OnRecord(void* ctx, void* data, size_t size) {
    Tracer* self = static_cast<Tracer*>(ctx);
    const uint8_t* p = static_cast<const uint8_t*>(data);
    // Records are fixed-size and a batch ends while one more still fits, so
    // this guard never trips; it only keeps memcpy inside the buffer.
    if (self->batchLen_ + size > kBatchBytes) return kBatchFull;
    memcpy(self->batch_ + self->batchLen_, p, size);
    self->batchLen_ += size;
    return ++self->batchRecords_ >= kMaxBatchRecords || self->batchLen_ + sizeof(struct wst_event) > kBatchBytes
               ? kBatchFull
               : 0;
  }

  Napi::Uint8Array BatchView(Napi::Env env) {
    return Napi::Uint8Array::New(env, batchLen_, batchBuf_.Value(), 0);
  }

  // Takes up to one batch from the ring. True when the ring may hold more.
  bool TakeBatch() {
    batchLen_ = 0;
    batchRecords_ = 0;
    return ring_buffer__consume(rb_) == kBatchFull;
  }

  static void OnReadable(uv_poll_t* handle, int status, int events) {
    static_cast<Tracer*>(handle->data)->DeliverBatch();
  }

  // Takes everything waiting, batch by batch; stops early if the tracer closes.
  static void OnDrainTimer(uv_timer_t* handle) {
    Tracer* self = static_cast<Tracer*>(handle->data);
    while (self->rb_ && self->DeliverBatch()) {
    }
  }

  // Takes one batch and hands it to JS. True when the ring may hold more.
  bool DeliverBatch() {
    if (!rb_) return false;
    bool more = TakeBatch();  // on the poll path uv polls again next turn if more
    if (batchLen_ == 0) return false;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    callback_.MakeCallback(Value(), {BatchView(env)}, *context_);
    return more;
  }

  // Delivers everything in the ring now, from a JS call (before stopping).
  Napi::Value Flush(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!rb_) return env.Undefined();
    bool more = true;
    while (more && rb_) {
      more = TakeBatch();
      if (batchLen_ == 0) break;
      callback_.Call(Value(), {BatchView(env)});
      if (env.IsExceptionPending()) break;
    }
    return env.Undefined();
  }

  // drainSummaries(): a Promise of {rows, keys, values}, every summary row
  // since the last drain, as the raw struct wst_summary_key/val arrays.
  Napi::Value DrainSummaries(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!skel_ || !summaries_) {
      Napi::Error::New(env, "the tracer is closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (summaries_->draining) {
      Napi::Error::New(env, "a summary drain is already running").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    summaries_->draining = true;
    DrainWorker* w = new DrainWorker(env, summaries_);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  // keepPorts([port, ...]): listening ports whose resets keep their own row.
  Napi::Value KeepPorts(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!skel_) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsArray()) {
      Napi::TypeError::New(env, "keepPorts takes an array of port numbers").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array list = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Value port = list.Get(i);
      // One byte store per port: the kernel side sets others at the same time.
      if (port.IsNumber()) listening_[port.As<Napi::Number>().Uint32Value() & 0xffff] = 1;
    }
    return env.Undefined();
  }

  Napi::Value Hooks(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env, hooks_.size());
    for (size_t i = 0; i < hooks_.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("signal", hooks_[i].signal);
      o.Set("name", hooks_[i].hook);
      o.Set("variant", hooks_[i].variant);
      o.Set("attached", hooks_[i].attached());
      if (!hooks_[i].standsDown.empty()) o.Set("standsDown", hooks_[i].standsDown);
      o.Set("error", hooks_[i].attached() ? "" : hooks_[i].error);
      out.Set(i, o);
    }
    return out;
  }

  static Napi::Array DumpHash(Napi::Env env, struct bpf_map* map) {
    Napi::Array out = Napi::Array::New(env);
    int fd = bpf_map__fd(map);
    size_t ks = bpf_map__key_size(map), vs = bpf_map__value_size(map);
    std::vector<uint8_t> key(ks), next(ks), val(vs);
    uint32_t n = 0;
    void* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
      if (bpf_map_lookup_elem(fd, next.data(), val.data()) == 0) {
        Napi::Array pair = Napi::Array::New(env, 2);
        pair.Set(0u, Napi::Buffer<uint8_t>::Copy(env, next.data(), ks));
        pair.Set(1u, Napi::Buffer<uint8_t>::Copy(env, val.data(), vs));
        out.Set(n++, pair);
      }
      key.swap(next);
      prev = key.data();
    }
    return out;
  }

  Napi::Value Counters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!skel_) {
      Napi::Error::New(env, "the tracer is closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int ncpu = libbpf_num_possible_cpus();
    std::vector<uint64_t> percpu(ncpu > 0 ? ncpu : 1);
    Napi::Array totals = Napi::Array::New(env, WST_CNT__MAX);
    int fd = bpf_map__fd(skel_->maps.totals);
    for (uint32_t i = 0; i < WST_CNT__MAX; i++) {
      uint64_t sum = 0;
      if (bpf_map_lookup_elem(fd, &i, percpu.data()) == 0)
        for (uint64_t v : percpu) sum += v;
      totals.Set(i, Napi::Number::New(env, static_cast<double>(sum)));
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("totals", totals);
    // counters(true): the totals alone, without dumping the hash maps.
    if (info.Length() > 0 && info[0].ToBoolean()) return out;
    out.Set("listeners", DumpHash(env, skel_->maps.listeners));
    out.Set("resets", DumpHash(env, skel_->maps.resets));
    out.Set("timewaits", DumpHash(env, skel_->maps.timewaits));
    out.Set("residency", DumpHash(env, skel_->maps.residency));
    Napi::Array hits = Napi::Array::New(env, WST_P__MAX);
    int hfd = bpf_map__fd(skel_->maps.hits);
    for (uint32_t i = 0; i < WST_P__MAX; i++) {
      uint64_t sum = 0;
      if (bpf_map_lookup_elem(hfd, &i, percpu.data()) == 0)
        for (uint64_t v : percpu) sum += v;
      hits.Set(i, Napi::Number::New(env, static_cast<double>(sum)));
    }
    out.Set("hits", hits);
    return out;
  }

  // The kernel's record of each loaded program (core and extra objects).
  std::vector<struct bpf_prog_info> ProgramInfos(std::vector<std::string>* names = nullptr) {
    std::vector<struct bpf_prog_info> out;
    if (!skel_) return out;
    std::vector<struct bpf_object*> objects = {skel_->obj};
    for (const HookState& h : hooks_)
      if (h.ext) objects.push_back(static_cast<struct wstrace_ext_bpf*>(h.ext)->obj);
    for (struct bpf_object* obj : objects) {
      struct bpf_program* prog;
      bpf_object__for_each_program(prog, obj) {
        struct bpf_prog_info pi = {};
        uint32_t len = sizeof(pi);
        int fd = bpf_program__fd(prog);
        if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &pi, &len) == 0) {
          out.push_back(pi);
          // The full name (the kernel's is cut at 15 characters).
          if (names) names->push_back(bpf_program__name(prog));
        }
      }
    }
    return out;
  }

  Napi::Value ProgramIds(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<struct bpf_prog_info> infos = ProgramInfos();
    Napi::Array out = Napi::Array::New(env, infos.size());
    for (size_t i = 0; i < infos.size(); i++) out.Set(i, Napi::Number::New(env, infos[i].id));
    return out;
  }

  // Runs the kernel skipped because they would have nested in a run of the
  // same program on the same CPU (a softirq's event while one from process
  // context is being handled): events missing from every count. The kernel
  // keeps this per program; 0 on kernels before 5.12, which do not. Not the
  // runs of syn_drop's route programs, each attached twice (a run skipped in
  // one is made by its twin, which the interrupted run is not): theirs are
  // the rises an end could not take, interrupted at every try (wst_settle_state.lost).
  Napi::Value SkippedRuns(const Napi::CallbackInfo& info) {
    std::vector<std::string> names;
    std::vector<struct bpf_prog_info> infos = ProgramInfos(&names);
    uint64_t sum = SettleSums().lost;
    for (size_t i = 0; i < infos.size(); i++)
      if (!Twinned(names[i])) sum += infos[i].recursion_misses;
    return Napi::Number::New(info.Env(), static_cast<double>(sum));
  }

  // syn_drop's route programs, each attached twice.
  static bool Twinned(const std::string& name) {
    return name.rfind("wst_syn_consumed", 0) == 0 || name.rfind("wst_syn_freed", 0) == 0;
  }

  // wst_settle_state's counts, summed over CPUs (lost, stale; the rest unused).
  struct wst_settle_state SettleSums() {
    struct wst_settle_state sum = {};
    if (!skel_) return sum;
    int ncpu = libbpf_num_possible_cpus();
    std::vector<struct wst_settle_state> percpu(ncpu > 0 ? ncpu : 1);
    uint32_t zero = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.settling), &zero, percpu.data()) == 0)
      for (const struct wst_settle_state& s : percpu) {
        sum.lost += s.lost;
        sum.stale += s.stale;
      }
    return sum;
  }

  // syn_drop's tracepoint route, for diagnosis: rises an end could not take,
  // interrupted at every try (lost), marks a second twin never cleared
  // (stale), and the runs the kernel skipped in the twinned programs
  // (twinSkips: each made by its twin).
  Napi::Value RouteState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<std::string> names;
    std::vector<struct bpf_prog_info> infos = ProgramInfos(&names);
    uint64_t skips = 0;
    for (size_t i = 0; i < infos.size(); i++)
      if (Twinned(names[i])) skips += infos[i].recursion_misses;
    struct wst_settle_state sums = SettleSums();
    Napi::Object o = Napi::Object::New(env);
    o.Set("lost", Napi::Number::New(env, static_cast<double>(sums.lost)));
    o.Set("stale", Napi::Number::New(env, static_cast<double>(sums.stale)));
    o.Set("twinSkips", Napi::Number::New(env, static_cast<double>(skips)));
    if (info.Length() > 0 && info[0].IsNumber()) {
      uint32_t netns = info[0].As<Napi::Number>().Uint32Value();
      MibSeen settled;
      if (SettledSums(netns, &settled)) {
        Napi::Object m = Napi::Object::New(env);
        m.Set("overflows", Napi::Number::New(env, static_cast<double>(settled.overflows)));
        m.Set("drops", Napi::Number::New(env, static_cast<double>(settled.drops)));
        m.Set("reqqFull", Napi::Number::New(env, static_cast<double>(settled.reqqFull)));
        m.Set("cookies", Napi::Number::New(env, static_cast<double>(settled.cookies)));
        o.Set("settled", m);
      }
    }
    return o;
  }

  // struct mib_key and struct mib_seen of wstrace.bpf.c (the map's sizes are checked before use).
  struct MibKey {
    uint32_t netns;
    uint32_t cpu;
  };
  struct MibSeen {
    uint64_t overflows, drops, reqqFull, cookies;
  };

  // The route's settled counts of one namespace, summed over CPUs: the
  // namespace's MIB totals less these are rises no end has taken yet.
  bool SettledSums(uint32_t netns, MibSeen* sum) {
    *sum = {};
    if (!skel_) return false;
    const struct bpf_map* map = skel_->maps.mib_settled;
    if (bpf_map__key_size(map) != sizeof(MibKey) || bpf_map__value_size(map) != sizeof(MibSeen)) return false;
    int fd = bpf_map__fd(map);
    MibKey key, next;
    bool found = false;
    for (int err = bpf_map_get_next_key(fd, nullptr, &next); !err; err = bpf_map_get_next_key(fd, &key, &next)) {
      key = next;
      MibSeen v;
      if (key.netns != netns || bpf_map_lookup_elem(fd, &key, &v)) continue;
      sum->overflows += v.overflows;
      sum->drops += v.drops;
      sum->reqqFull += v.reqqFull;
      sum->cookies += v.cookies;
      found = true;
    }
    return found;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    bool wasOpen = skel_ != nullptr;
    Release();
    if (wasOpen) Unref();
    return info.Env().Undefined();
  }

  // One cleanup path for every failure and for close().
  void Release() {
    if (drain_) {
      uv_timer_stop(drain_);
      uv_close(reinterpret_cast<uv_handle_t*>(drain_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
      drain_ = nullptr;
    }
    if (poll_) {
      uv_poll_stop(poll_);
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll_ = nullptr;
    }
    if (rb_) {
      ring_buffer__free(rb_);
      rb_ = nullptr;
    }
    for (HookState& h : hooks_) Detach(h);
    summaries_.reset();
    kernel_.reset();
    if (listening_) {
      munmap(const_cast<uint8_t*>(listening_), sizeof(struct wst_listening));
      listening_ = nullptr;
    }
    if (skel_) {
      wstrace_bpf__destroy(skel_);
      skel_ = nullptr;
    }
    delete context_;
    context_ = nullptr;
    if (!callback_.IsEmpty()) callback_.Reset();
    if (!batchBuf_.IsEmpty()) batchBuf_.Reset();
    batch_ = nullptr;
  }
};

Napi::FunctionReference* Tracer::constructor = nullptr;

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "open(options): options must be an object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object obj = Tracer::constructor->New({});
  Tracer* t = Tracer::Unwrap(obj);
  if (!t->Start(env, info[0].As<Napi::Object>())) return env.Undefined();
  return obj;
}

#define FIELD(type, f) o.Set(#f, Napi::Number::New(env, offsetof(type, f)))

Napi::Value Layout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  auto add = [&](const char* name, size_t size, Napi::Object o) {
    Napi::Object l = Napi::Object::New(env);
    l.Set("size", Napi::Number::New(env, size));
    l.Set("offsets", o);
    out.Set(name, l);
  };
  {
    Napi::Object o = Napi::Object::New(env);
    FIELD(wst_event, ts_ns); FIELD(wst_event, inode); FIELD(wst_event, cgroup); FIELD(wst_event, laddr); FIELD(wst_event, raddr);
    FIELD(wst_event, netns); FIELD(wst_event, reason); FIELD(wst_event, queue); FIELD(wst_event, backlog);
    FIELD(wst_event, lport); FIELD(wst_event, rport); FIELD(wst_event, family); FIELD(wst_event, kind);
    FIELD(wst_event, state);
    add("event", sizeof(wst_event), o);
  }
  {
    Napi::Object o = Napi::Object::New(env);
    FIELD(wst_listener_key, addr); FIELD(wst_listener_key, netns); FIELD(wst_listener_key, port);
    FIELD(wst_listener_key, family);
    add("listenerKey", sizeof(wst_listener_key), o);
  }
  {
    Napi::Object o = Napi::Object::New(env);
    FIELD(wst_listener_val, enqueued); FIELD(wst_listener_val, full_hits); FIELD(wst_listener_val, overflows);
    FIELD(wst_listener_val, last_event_ns); FIELD(wst_listener_val, inode); FIELD(wst_listener_val, cgroup);
    FIELD(wst_listener_val, peak);
    FIELD(wst_listener_val, backlog); FIELD(wst_listener_val, depth); FIELD(wst_listener_val, syn_drops);
    FIELD(wst_listener_val, last_syn_event_ns); FIELD(wst_listener_val, cookies_sent);
    FIELD(wst_listener_val, synack_retrans);
    add("listenerValue", sizeof(wst_listener_val), o);
  }
  {
    Napi::Object o = Napi::Object::New(env);
    FIELD(wst_residency, buckets); FIELD(wst_residency, count); FIELD(wst_residency, sum_ns);
    o.Set("bucketCount", WST_RESIDENCY_BUCKETS);
    add("residency", sizeof(wst_residency), o);
  }
  {
    Napi::Object o = Napi::Object::New(env);
    FIELD(wst_reset_key, cgroup); FIELD(wst_reset_key, netns); FIELD(wst_reset_key, reason);
    FIELD(wst_reset_key, lport);
    FIELD(wst_reset_key, kind); FIELD(wst_reset_key, state);
    add("resetKey", sizeof(wst_reset_key), o);
  }
  {
    Napi::Object o = Napi::Object::New(env);
    FIELD(wst_tw_key, cgroup); FIELD(wst_tw_key, raddr); FIELD(wst_tw_key, netns); FIELD(wst_tw_key, rport); FIELD(wst_tw_key, family);
    add("timewaitKey", sizeof(wst_tw_key), o);
  }
  {
    Napi::Object o = Napi::Object::New(env);
    FIELD(wst_summary_key, cgroup); FIELD(wst_summary_key, laddr); FIELD(wst_summary_key, raddr); FIELD(wst_summary_key, netns);
    FIELD(wst_summary_key, reason); FIELD(wst_summary_key, lport); FIELD(wst_summary_key, rport);
    FIELD(wst_summary_key, family); FIELD(wst_summary_key, kind); FIELD(wst_summary_key, state);
    add("summaryKey", sizeof(wst_summary_key), o);
  }
  {
    Napi::Object o = Napi::Object::New(env);
    FIELD(wst_summary_val, count); FIELD(wst_summary_val, first_ns); FIELD(wst_summary_val, last_ns);
    add("summaryValue", sizeof(wst_summary_val), o);
  }
  // The enums the signal table generated, by name, as this build compiled them.
  auto named = [&](const char* name, size_t size, const NamedValue* values, size_t n) {
    Napi::Object o = Napi::Object::New(env);
    for (size_t i = 0; i < n; i++) o.Set(values[i].name, Napi::Number::New(env, values[i].value));
    add(name, size, o);
  };
  named("counters", WST_CNT__MAX, kCounterIndexes, std::size(kCounterIndexes));
  named("kinds", 0, kKindCodes, std::size(kKindCodes));
  named("hits", WST_P__MAX, kHitIndexes, std::size(kHitIndexes));
  named("causes", 0, kCauseIndexes, std::size(kCauseIndexes));
  {
    Napi::Object o = Napi::Object::New(env);
    o.Set("noReason", Napi::Number::New(env, WST_NO_REASON));
    o.Set("maxPorts", static_cast<int>(WST_MAX_PORTS));
    o.Set("maxCgroups", static_cast<int>(WST_MAX_CGROUPS));
    o.Set("summaryRows", static_cast<int>(WST_SUMMARY_ROWS));
    add("constants", 0, o);
  }
  // Key and value sizes of each map as the BPF object declares them: which
  // struct each map holds is checked here, not only the structs themselves.
  {
    Napi::Object o = Napi::Object::New(env);
    struct wstrace_bpf* skel = wstrace_bpf__open();
    if (skel) {
      struct bpf_map* m;
      bpf_object__for_each_map(m, skel->obj) {
        std::string name = bpf_map__name(m);
        if (name.find('.') != std::string::npos) continue;  // .rodata, .bss: globals, not maps the decoder reads
        o.Set(name + ".key", bpf_map__key_size(m));
        o.Set(name + ".value", bpf_map__value_size(m));
        o.Set(name + ".entries", bpf_map__max_entries(m));
      }
      wstrace_bpf__destroy(skel);
    }
    add("maps", 0, o);
  }
  return out;
}

#undef FIELD

// Enumerator names of a kernel enum, by value, from the running kernel's BTF:
// their numbers differ between kernels, so no table is typed by hand.
Napi::Value EnumNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "enumNames(name): name must be a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>();
  Napi::Object out = Napi::Object::New(env);
  struct btf* btf = btf__load_vmlinux_btf();
  if (!btf) return out;
  int id = btf__find_by_name_kind(btf, name.c_str(), BTF_KIND_ENUM);
  if (id > 0) {
    const struct btf_type* t = btf__type_by_id(btf, id);
    const struct btf_enum* e = btf_enum(t);
    for (int i = 0; i < btf_vlen(t); i++)
      out.Set(Napi::Number::New(env, static_cast<uint32_t>(e[i].val)),
              Napi::String::New(env, btf__name_by_offset(btf, e[i].name_off)));
  }
  btf__free(btf);
  return out;
}

Napi::Value ClockOffsetNs(const Napi::CallbackInfo& info) {
  struct timespec mono, real;
  clock_gettime(CLOCK_MONOTONIC, &mono);
  clock_gettime(CLOCK_REALTIME, &real);
  int64_t offset = (static_cast<int64_t>(real.tv_sec) - mono.tv_sec) * 1000000000LL + (real.tv_nsec - mono.tv_nsec);
  return Napi::BigInt::New(info.Env(), offset);
}

// What this build carries, for `wstrace --version`: the libbpf it runs (in a
// prebuilt addon linked statically, so the one it was built with) and the
// bytes of the BPF objects compiled into it, which the caller hashes: two
// hosts whose hashes agree load the same programs.
Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("libbpf", libbpf_version_string());
  Napi::Object objects = Napi::Object::New(env);
  size_t size = 0;
  const void* bytes = wstrace_bpf__elf_bytes(&size);
  objects.Set("wstrace", Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t*>(bytes), size));
  bytes = wstrace_ext_bpf__elf_bytes(&size);
  objects.Set("wstrace_ext", Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t*>(bytes), size));
  out.Set("bpfObjects", objects);
  return out;
}

}  // namespace

void InitTracer(Napi::Env env, Napi::Object exports) {
  InstallLibbpfPrint();
  Tracer::constructor = new Napi::FunctionReference(Napi::Persistent(Tracer::Define(env)));
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("layout", Napi::Function::New(env, Layout, "layout"));
  exports.Set("enumNames", Napi::Function::New(env, EnumNames, "enumNames"));
  exports.Set("clockOffsetNs", Napi::Function::New(env, ClockOffsetNs, "clockOffsetNs"));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
}

}  // namespace wstrace
