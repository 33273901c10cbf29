// dumpSockets(): the kernel's own view of TCP listeners (accept-queue depth and
// limit) and TIME_WAIT sockets, through NETLINK_SOCK_DIAG, the interface `ss`
// uses. TIME_WAIT sockets are grouped here, not in JS: a busy host has tens of
// thousands of them and JS only needs one row per destination.
#include "sockdiag.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "netns.h"

namespace wstrace {
namespace {

// Larger than the biggest skb a netlink dump fills (about 32 KiB), so a
// message is never cut; MSG_TRUNC is still checked.
constexpr size_t kRecvBytes = 64 * 1024;

struct Listener {
  int family;
  std::string addr;
  uint16_t port;
  uint32_t queue;
  uint32_t backlog;
  uint32_t inode;
  uint32_t uid;
  uint64_t cgroup;  // the socket's cgroup v2 id, 0 when the kernel does not say (before 5.7)
};

struct TimewaitKey {
  int family;
  std::array<uint8_t, 16> addr;
  uint16_t port;
  bool operator<(const TimewaitKey& o) const {
    return std::tie(family, addr, port) < std::tie(o.family, o.addr, o.port);
  }
};

struct TimewaitGroup {
  int family;
  std::string raddr;
  uint16_t rport;
  uint64_t count;
};

struct Dump {
  std::vector<Listener> listeners;
  std::map<TimewaitKey, uint64_t> timewait;
  uint64_t timewaitTotal = 0;
};

struct Failure {
  std::string message;
  int err = 0;
};

std::string Printable(int family, const void* addr) {
  char text[INET6_ADDRSTRLEN] = "";
  inet_ntop(family, addr, text, sizeof text);
  return text;
}

// INET_DIAG_CGROUP_ID: sent for every full socket by kernels from 5.7, unasked.
uint64_t CgroupId(const nlmsghdr* h) {
  int left = static_cast<int>(h->nlmsg_len) - static_cast<int>(NLMSG_LENGTH(sizeof(inet_diag_msg)));
  const char* first = static_cast<const char*>(NLMSG_DATA(h)) + NLMSG_ALIGN(sizeof(inet_diag_msg));
  for (auto* a = reinterpret_cast<const rtattr*>(first); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
    if (a->rta_type != INET_DIAG_CGROUP_ID || RTA_PAYLOAD(a) < sizeof(uint64_t)) continue;
    uint64_t id;
    memcpy(&id, RTA_DATA(a), sizeof id);
    return id;
  }
  return 0;
}

void Collect(const inet_diag_msg& m, uint64_t cgroup, Dump* dump) {
  int family = m.idiag_family;
  if (family != AF_INET && family != AF_INET6) return;
  // Timewait minisockets report their substate. Those still in FIN_WAIT2
  // (closed by their process before the peer's FIN) are not TIME_WAIT and are
  // left out, though /proc/net/sockstat's `tw` counts them.
  if (m.idiag_state == TCP_LISTEN) {
    dump->listeners.push_back({family, Printable(family, m.id.idiag_src), ntohs(m.id.idiag_sport), m.idiag_rqueue,
                               m.idiag_wqueue, m.idiag_inode, m.idiag_uid, cgroup});
  } else if (m.idiag_state == TCP_TIME_WAIT) {
    TimewaitKey key{family, {}, ntohs(m.id.idiag_dport)};
    memcpy(key.addr.data(), m.id.idiag_dst, family == AF_INET ? 4 : 16);
    dump->timewait[key]++;
    dump->timewaitTotal++;
  }
}

// One SOCK_DIAG_BY_FAMILY dump of TCP sockets in LISTEN or TIME_WAIT.
bool DumpFamily(int fd, uint8_t family, uint32_t seq, std::vector<char>& buf, Dump* dump, Failure* fail) {
  const char* familyName = family == AF_INET ? "ipv4" : "ipv6";
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } request;
  memset(&request, 0, sizeof request);
  request.nlh.nlmsg_len = sizeof request;
  request.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  request.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.nlh.nlmsg_seq = seq;
  request.req.sdiag_family = family;
  request.req.sdiag_protocol = IPPROTO_TCP;
  request.req.idiag_states = (1u << TCP_LISTEN) | (1u << TCP_TIME_WAIT);

  sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = sendto(fd, &request, sizeof request, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    fail->err = errno;
    fail->message = std::string("cannot request the ") + familyName + " TCP socket dump: " + ErrnoMessage(errno);
    return false;
  }

  for (;;) {
    sockaddr_nl from;
    iovec iov{buf.data(), buf.size()};
    msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n = recvmsg(fd, &msg, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      fail->err = errno;
      fail->message = std::string("cannot read the ") + familyName + " TCP socket dump: " + ErrnoMessage(errno);
      return false;
    }
    if (msg.msg_flags & MSG_TRUNC) {
      fail->err = EMSGSIZE;
      fail->message = std::string("the ") + familyName + " TCP socket dump sent a message larger than " +
                      std::to_string(buf.size()) + " bytes";
      return false;
    }
    if (n == 0) {
      fail->err = EPIPE;
      fail->message = std::string("the ") + familyName + " TCP socket dump ended without NLMSG_DONE";
      return false;
    }
    if (from.nl_pid != 0) continue;  // only the kernel answers a dump

    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_DONE) {
        // A dump that failed half-way says so in the DONE payload.
        int status = 0;
        if (h->nlmsg_len >= NLMSG_LENGTH(sizeof status)) memcpy(&status, NLMSG_DATA(h), sizeof status);
        if (status < 0) {
          fail->err = -status;
          fail->message = std::string("the ") + familyName + " TCP socket dump failed: " + ErrnoMessage(-status);
          return false;
        }
        return true;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) continue;
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        if (e->error == 0) continue;
        // Without IPv6 in the kernel there is no AF_INET6 handler: no sockets.
        if (family == AF_INET6 && e->error == -ENOENT) return true;
        fail->err = -e->error;
        fail->message = std::string("the kernel refused the ") + familyName +
                        " TCP socket dump: " + ErrnoMessage(-e->error);
        return false;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) continue;
      // NLM_F_DUMP_INTR is not checked: inet_diag walks the socket hashes
      // without a generation count and never sets it.
      Collect(*static_cast<const inet_diag_msg*>(NLMSG_DATA(h)), CgroupId(h), dump);
    }
  }
}

// Runs in whichever namespace the calling thread is in: the netlink socket
// belongs to the namespace it was created in.
bool DumpCurrentNetns(Dump* dump, Failure* fail) {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) {
    fail->err = errno;
    fail->message = "cannot open a NETLINK_SOCK_DIAG socket: " + ErrnoMessage(errno);
    return false;
  }
  std::vector<char> buf(kRecvBytes);
  bool ok = DumpFamily(fd, AF_INET, 1, buf, dump, fail) && DumpFamily(fd, AF_INET6, 2, buf, dump, fail);
  close(fd);
  return ok;
}

const char* FamilyName(int family) { return family == AF_INET ? "ipv4" : "ipv6"; }

class DumpSocketsWorker : public PromiseWorker {
 public:
  DumpSocketsWorker(Napi::Env env, std::string nsPath)
      : PromiseWorker(env, "wstrace:DumpSockets"), nsPath_(std::move(nsPath)) {}

  void Execute() override {
    Dump dump;
    Failure fail;
    bool ok;
    if (nsPath_.empty()) {
      ok = DumpCurrentNetns(&dump, &fail);
    } else {
      std::string enterError;
      int enterErrno = 0;
      bool entered = RunInNetns(nsPath_, [&] { ok = DumpCurrentNetns(&dump, &fail); }, &enterError, &enterErrno);
      if (!entered) {
        ok = false;
        fail = {enterError, enterErrno};
      }
    }
    if (!ok) {
      Fail(fail.message, fail.err);
      return;
    }

    listeners_ = std::move(dump.listeners);
    std::sort(listeners_.begin(), listeners_.end(), [](const Listener& a, const Listener& b) {
      return std::tie(a.port, a.family, a.addr) < std::tie(b.port, b.family, b.addr);
    });
    timewait_.reserve(dump.timewait.size());
    for (const auto& [key, count] : dump.timewait) {
      timewait_.push_back({key.family, Printable(key.family, key.addr.data()), key.port, count});
    }
    // Busiest destinations first: what a reader looks for.
    std::stable_sort(timewait_.begin(), timewait_.end(),
                     [](const TimewaitGroup& a, const TimewaitGroup& b) { return a.count > b.count; });
    timewaitTotal_ = dump.timewaitTotal;
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array listeners = Napi::Array::New(env, listeners_.size());
    for (size_t i = 0; i < listeners_.size(); i++) {
      const Listener& l = listeners_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("family", FamilyName(l.family));
      o.Set("addr", l.addr);
      o.Set("port", l.port);
      o.Set("queue", l.queue);
      o.Set("backlog", l.backlog);
      o.Set("inode", l.inode);
      o.Set("uid", l.uid);
      o.Set("cgroup", static_cast<double>(l.cgroup));
      listeners.Set(i, o);
    }
    Napi::Array timewait = Napi::Array::New(env, timewait_.size());
    for (size_t i = 0; i < timewait_.size(); i++) {
      const TimewaitGroup& g = timewait_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("family", FamilyName(g.family));
      o.Set("raddr", g.raddr);
      o.Set("rport", g.rport);
      o.Set("count", static_cast<double>(g.count));
      timewait.Set(i, o);
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("listeners", listeners);
    result.Set("timewait", timewait);
    result.Set("timewaitTotal", static_cast<double>(timewaitTotal_));
    Resolve(result);
  }

 private:
  std::string nsPath_;
  std::vector<Listener> listeners_;
  std::vector<TimewaitGroup> timewait_;
  uint64_t timewaitTotal_ = 0;
};

// dumpSockets(options?: { netns?: string }): Promise<SocketDump>
Napi::Value DumpSockets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string nsPath;
  Napi::Value options = info[0];
  if (!options.IsUndefined() && !options.IsNull()) {
    if (!options.IsObject() || options.IsArray()) {
      Napi::TypeError::New(env, "options must be an object like { netns: '/run/netns/NAME' }")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Value netns = options.As<Napi::Object>().Get("netns");
    if (env.IsExceptionPending()) return env.Undefined();
    if (!netns.IsUndefined()) {
      if (!netns.IsString() || netns.As<Napi::String>().Utf8Value().empty() ||
          netns.As<Napi::String>().Utf8Value().find('\0') != std::string::npos) {
        Napi::TypeError::New(env, "options.netns must be a non-empty string (a path like /run/netns/NAME)")
            .ThrowAsJavaScriptException();
        return env.Undefined();
      }
      nsPath = netns.As<Napi::String>().Utf8Value();
    }
  }
  auto* worker = new DumpSocketsWorker(env, std::move(nsPath));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void InitSockDiag(Napi::Env env, Napi::Object exports) {
  exports.Set("dumpSockets", Napi::Function::New(env, DumpSockets, "dumpSockets"));
}

}  // namespace wstrace
