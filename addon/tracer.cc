// The tracer object: open, configure, load and attach the BPF skeleton; drain
// the ring buffer on the JS thread (uv_poll on its epoll fd) and hand JS one
// Buffer per wake-up; read the counter maps; detach and free on close().
// No policy here: decoding and naming happen in src/kernel/.
#include "tracer.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/btf.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "wstrace.h"
#include "wstrace.skel.h"

namespace wstrace {
namespace {

// Upper bound of records handed to JS per wake-up, so a flood cannot hold the
// JS thread; the rest stays in the ring and the next loop turn takes it.
constexpr size_t kMaxBatchRecords = 8192;
constexpr int kBatchFull = -E2BIG;

struct HookSpec {
  const char* name;     // tracepoint
  const char* program;  // BPF program name
};

constexpr HookSpec kHooks[] = {
    {"tcp_send_reset", "wst_rst_sent"},
    {"tcp_receive_reset", "wst_rst_recv"},
    {"inet_sock_set_state", "wst_timewait"},
    {"sk_data_ready", "wst_acceptq"},
    {"kfree_skb", "wst_listen_ovf"},
};

int PrintLibbpf(enum libbpf_print_level level, const char* fmt, va_list args) {
  static const bool debug = getenv("WSTRACE_DEBUG") != nullptr;
  if (!debug && level != LIBBPF_WARN) return 0;
  if (!debug) return 0;
  return vfprintf(stderr, fmt, args);
}

std::string ErrnoText(int err) {
  if (err < 0) err = -err;
  return std::string(strerror(err)) + " (errno " + std::to_string(err) + ")";
}

// Does the running kernel's BTF have enum `type` with member `member`?
bool KernelEnumHas(const char* type, const char* member) {
  struct btf* btf = btf__load_vmlinux_btf();
  if (!btf) return false;
  bool found = false;
  int id = btf__find_by_name_kind(btf, type, BTF_KIND_ENUM);
  if (id > 0) {
    const struct btf_type* t = btf__type_by_id(btf, id);
    const struct btf_enum* e = btf_enum(t);
    for (int i = 0; i < btf_vlen(t) && !found; i++)
      found = strcmp(btf__name_by_offset(btf, e[i].name_off), member) == 0;
  }
  btf__free(btf);
  return found;
}

class Tracer : public Napi::ObjectWrap<Tracer> {
 public:
  static Napi::FunctionReference* constructor;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Tracer",
                       {
                           InstanceMethod<&Tracer::Hooks>("hooks"),
                           InstanceMethod<&Tracer::Counters>("counters"),
                           InstanceMethod<&Tracer::ProgramIds>("programIds"),
                           InstanceMethod<&Tracer::Flush>("flush"),
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
    if (!ring.IsNumber()) return TypeError(env, "options.ringBytes must be a number");
    uint32_t ringBytes = ring.As<Napi::Number>().Uint32Value();
    long page = sysconf(_SC_PAGESIZE);
    if (ringBytes < static_cast<uint32_t>(page) || (ringBytes & (ringBytes - 1)) != 0)
      return TypeError(env, "options.ringBytes must be a power of two of at least " + std::to_string(page));
    if (!interval.IsNumber() || interval.As<Napi::Number>().DoubleValue() < 0)
      return TypeError(env, "options.fullEventIntervalNs must be a non-negative number");
    if (!onBatch.IsFunction()) return TypeError(env, "options.onBatch must be a function");

    skel_ = wstrace_bpf__open();
    if (!skel_) return Fail(env, "failed to open BPF object: " + ErrnoText(errno));
    for (size_t i = 0; i < portValues.size(); i++) skel_->rodata->filter_ports[i] = portValues[i];
    skel_->rodata->filter_nports = portValues.size();
    skel_->rodata->filter_netns = netns.As<Napi::Number>().Uint32Value();
    skel_->rodata->full_event_interval_ns = static_cast<uint64_t>(interval.As<Napi::Number>().DoubleValue());
    int err = bpf_map__set_max_entries(skel_->maps.events, ringBytes);
    if (err) return Fail(env, "failed to size the ring buffer: " + ErrnoText(err));

    err = wstrace_bpf__load(skel_);
    if (err) return Fail(env, "failed to load BPF programs: " + ErrnoText(err), -err);

    Attach();

    rb_ = ring_buffer__new(bpf_map__fd(skel_->maps.events), OnRecord, this, nullptr);
    if (!rb_) return Fail(env, "failed to set up the ring buffer: " + ErrnoText(errno));

    callback_ = Napi::Persistent(onBatch.As<Napi::Function>());
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
    // While polling, the JS object must outlive its last JS reference.
    Ref();
    return true;
  }

 private:
  struct HookState {
    std::string name, program, error;
    struct bpf_link* link = nullptr;
  };

  struct wstrace_bpf* skel_ = nullptr;
  struct ring_buffer* rb_ = nullptr;
  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference callback_;
  Napi::AsyncContext* context_ = nullptr;
  std::vector<HookState> hooks_;
  std::vector<uint8_t> batch_;
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

  // Each program separately: one missing tracepoint blinds one signal only.
  void Attach() {
    bool overflowReason = KernelEnumHas("skb_drop_reason", "SKB_DROP_REASON_TCP_LISTEN_OVERFLOW");
    for (const HookSpec& spec : kHooks) {
      HookState h;
      h.name = spec.name;
      h.program = spec.program;
      struct bpf_program* prog = bpf_object__find_program_by_name(skel_->obj, spec.program);
      if (!prog) {
        h.error = "program missing from the BPF object";
      } else if (strcmp(spec.program, "wst_listen_ovf") == 0 && !overflowReason) {
        h.error = "this kernel has no SKB_DROP_REASON_TCP_LISTEN_OVERFLOW drop reason (Linux 6.15+)";
      } else {
        struct bpf_link* link = bpf_program__attach(prog);
        int err = libbpf_get_error(link);
        if (err) {
          h.error = "failed to attach to " + h.name + ": " + ErrnoText(err);
        } else {
          h.link = link;
        }
      }
      hooks_.push_back(h);
    }
  }

  static int OnRecord(void* ctx, void* data, size_t size) {
    Tracer* self = static_cast<Tracer*>(ctx);
    const uint8_t* p = static_cast<const uint8_t*>(data);
    self->batch_.insert(self->batch_.end(), p, p + size);
    return ++self->batchRecords_ >= kMaxBatchRecords ? kBatchFull : 0;
  }

  // Takes up to one batch from the ring. True when the ring may hold more.
  bool TakeBatch() {
    batch_.clear();
    batchRecords_ = 0;
    return ring_buffer__consume(rb_) == kBatchFull;
  }

  static void OnReadable(uv_poll_t* handle, int status, int events) {
    Tracer* self = static_cast<Tracer*>(handle->data);
    if (!self->rb_) return;
    self->TakeBatch();  // more than a batch waiting: uv polls again next turn
    if (self->batch_.empty()) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::Copy(env, self->batch_.data(), self->batch_.size());
    self->batch_.clear();
    self->callback_.MakeCallback(self->Value(), {buf}, *self->context_);
  }

  // Delivers everything in the ring now, from a JS call (before stopping).
  Napi::Value Flush(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!rb_) return env.Undefined();
    bool more = true;
    while (more && rb_) {
      more = TakeBatch();
      if (batch_.empty()) break;
      Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::Copy(env, batch_.data(), batch_.size());
      batch_.clear();
      callback_.Call(Value(), {buf});
      if (env.IsExceptionPending()) break;
    }
    return env.Undefined();
  }

  Napi::Value Hooks(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env, hooks_.size());
    for (size_t i = 0; i < hooks_.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", hooks_[i].name);
      o.Set("program", hooks_[i].program);
      o.Set("attached", hooks_[i].link != nullptr);
      o.Set("error", hooks_[i].error);
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
    out.Set("listeners", DumpHash(env, skel_->maps.listeners));
    out.Set("resets", DumpHash(env, skel_->maps.resets));
    out.Set("timewaits", DumpHash(env, skel_->maps.timewaits));
    return out;
  }

  Napi::Value ProgramIds(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    if (!skel_) return out;
    uint32_t n = 0;
    struct bpf_program* prog;
    bpf_object__for_each_program(prog, skel_->obj) {
      struct bpf_prog_info pi = {};
      uint32_t len = sizeof(pi);
      int fd = bpf_program__fd(prog);
      if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &pi, &len) == 0) out.Set(n++, Napi::Number::New(env, pi.id));
    }
    return out;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    bool wasOpen = skel_ != nullptr;
    Release();
    if (wasOpen) Unref();
    return info.Env().Undefined();
  }

  // One cleanup path for every failure and for close().
  void Release() {
    if (poll_) {
      uv_poll_stop(poll_);
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll_ = nullptr;
    }
    if (rb_) {
      ring_buffer__free(rb_);
      rb_ = nullptr;
    }
    for (HookState& h : hooks_) {
      if (h.link) bpf_link__destroy(h.link);
      h.link = nullptr;
      if (h.error.empty()) h.error = "detached";
    }
    if (skel_) {
      wstrace_bpf__destroy(skel_);
      skel_ = nullptr;
    }
    delete context_;
    context_ = nullptr;
    if (!callback_.IsEmpty()) callback_.Reset();
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
    FIELD(wst_event, ts_ns); FIELD(wst_event, inode); FIELD(wst_event, laddr); FIELD(wst_event, raddr);
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
    FIELD(wst_listener_val, last_event_ns); FIELD(wst_listener_val, inode); FIELD(wst_listener_val, peak);
    FIELD(wst_listener_val, backlog); FIELD(wst_listener_val, depth);
    add("listenerValue", sizeof(wst_listener_val), o);
  }
  {
    Napi::Object o = Napi::Object::New(env);
    FIELD(wst_reset_key, netns); FIELD(wst_reset_key, reason); FIELD(wst_reset_key, lport);
    FIELD(wst_reset_key, kind); FIELD(wst_reset_key, state);
    add("resetKey", sizeof(wst_reset_key), o);
  }
  {
    Napi::Object o = Napi::Object::New(env);
    FIELD(wst_tw_key, raddr); FIELD(wst_tw_key, netns); FIELD(wst_tw_key, rport); FIELD(wst_tw_key, family);
    add("timewaitKey", sizeof(wst_tw_key), o);
  }
  {
    Napi::Object o = Napi::Object::New(env);
    o.Set("resetSent", static_cast<int>(WST_CNT_RESET_SENT)); o.Set("resetReceived", static_cast<int>(WST_CNT_RESET_RECEIVED));
    o.Set("timewait", static_cast<int>(WST_CNT_TIMEWAIT)); o.Set("acceptQueueFull", static_cast<int>(WST_CNT_ACCEPT_QUEUE_FULL));
    o.Set("listenOverflow", static_cast<int>(WST_CNT_LISTEN_OVERFLOW)); o.Set("acceptEnqueued", static_cast<int>(WST_CNT_ACCEPT_ENQUEUED));
    o.Set("ringDrops", static_cast<int>(WST_CNT_RING_DROPS)); o.Set("mapFull", static_cast<int>(WST_CNT_MAP_FULL)); o.Set("events", static_cast<int>(WST_CNT_EVENTS));
    add("counters", WST_CNT__MAX, o);
  }
  {
    Napi::Object o = Napi::Object::New(env);
    o.Set("resetSent", static_cast<int>(WST_RESET_SENT)); o.Set("resetReceived", static_cast<int>(WST_RESET_RECEIVED));
    o.Set("timewait", static_cast<int>(WST_TIMEWAIT)); o.Set("acceptQueueFull", static_cast<int>(WST_ACCEPT_QUEUE_FULL));
    o.Set("listenOverflow", static_cast<int>(WST_LISTEN_OVERFLOW)); o.Set("noReason", Napi::Number::New(env, WST_NO_REASON));
    o.Set("maxPorts", static_cast<int>(WST_MAX_PORTS));
    add("kinds", 0, o);
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

}  // namespace

void InitTracer(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(PrintLibbpf);
  Tracer::constructor = new Napi::FunctionReference(Napi::Persistent(Tracer::Define(env)));
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("layout", Napi::Function::New(env, Layout, "layout"));
  exports.Set("enumNames", Napi::Function::New(env, EnumNames, "enumNames"));
  exports.Set("clockOffsetNs", Napi::Function::New(env, ClockOffsetNs, "clockOffsetNs"));
}

}  // namespace wstrace
