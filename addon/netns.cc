// Network-namespace plumbing: run work on a thread that has joined another
// network namespace, and readFilesInNetns() built on it.
//
// setns() changes only the calling thread. A libuv pool thread that called it
// would stay in the other namespace and carry it into unrelated work later, so
// every namespace switch happens on a thread made for it and joined after.
// pthread_create rather than std::thread: the addon builds with
// -fno-exceptions, where a failed std::thread would abort the process instead
// of rejecting one promise.
#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace wstrace {
namespace {

// /proc/PID files are unbounded in principle; a runaway read must not eat the
// agent's memory.
constexpr size_t kMaxFileBytes = 64u << 20;

struct ThreadJob {
  const std::string* nsPath;
  const std::function<void()>* work;
  std::string error;
  int err = 0;
};

void* NetnsThreadMain(void* arg) {
  auto* job = static_cast<ThreadJob*>(arg);
  int fd = open(job->nsPath->c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
    int err = errno;
    if (fd >= 0) close(fd);
    job->err = err;
    job->error = "cannot enter network namespace " + *job->nsPath + ": " + ErrnoMessage(err);
    return nullptr;
  }
  close(fd);
  (*job->work)();
  return nullptr;
}

// /proc/net is a symlink to /proc/self/net, which follows the thread-group
// leader's namespace; /proc/thread-self/net follows this thread's.
std::string ThreadView(const std::string& path) {
  static const std::string kPrefixes[] = {"/proc/net/", "/proc/self/net/"};
  for (const auto& prefix : kPrefixes) {
    if (path.compare(0, prefix.size(), prefix) == 0) return "/proc/thread-self/net/" + path.substr(prefix.size());
  }
  return path;
}

// Reads a whole file; proc files report size 0, so read until EOF.
int ReadWhole(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  out->clear();
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return err;
    }
    if (n == 0) break;
    if (out->size() + static_cast<size_t>(n) > kMaxFileBytes) {
      close(fd);
      return EFBIG;
    }
    out->append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return 0;
}

class ReadFilesWorker : public PromiseWorker {
 public:
  ReadFilesWorker(Napi::Env env, std::string nsPath, std::vector<std::string> paths)
      : PromiseWorker(env, "wstrace:ReadFilesInNetns"), nsPath_(std::move(nsPath)), paths_(std::move(paths)) {}

  void Execute() override {
    std::string failure;
    int failErrno = 0;
    std::string enterError;
    int enterErrno = 0;
    bool entered = RunInNetns(
        nsPath_,
        [&] {
          contents_.resize(paths_.size());
          for (size_t i = 0; i < paths_.size(); i++) {
            int err = ReadWhole(ThreadView(paths_[i]), &contents_[i]);
            if (err != 0) {
              failErrno = err;
              failure = "cannot read " + paths_[i] + " in network namespace " + nsPath_ + ": " + ErrnoMessage(err);
              return;
            }
          }
        },
        &enterError, &enterErrno);
    if (!entered) {
      Fail(enterError, enterErrno);
    } else if (!failure.empty()) {
      Fail(failure, failErrno);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array result = Napi::Array::New(env, contents_.size());
    for (size_t i = 0; i < contents_.size(); i++) result.Set(i, Napi::String::New(env, contents_[i]));
    Resolve(result);
  }

 private:
  std::string nsPath_;
  std::vector<std::string> paths_;
  std::vector<std::string> contents_;
};

bool IsPlainString(const Napi::Value& v) {
  if (!v.IsString()) return false;
  return v.As<Napi::String>().Utf8Value().find('\0') == std::string::npos;
}

// readFilesInNetns(nsPath: string, paths: string[]): Promise<string[]>
Napi::Value ReadFilesInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!IsPlainString(info[0]) || info[0].As<Napi::String>().Utf8Value().empty()) {
    Napi::TypeError::New(env, "nsPath must be a non-empty string (a path like /run/netns/NAME)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!info[1].IsArray()) {
    Napi::TypeError::New(env, "paths must be an array of absolute file paths").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array list = info[1].As<Napi::Array>();
  std::vector<std::string> paths;
  paths.reserve(list.Length());
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value item = list.Get(i);
    if (env.IsExceptionPending()) return env.Undefined();
    if (!IsPlainString(item) || item.As<Napi::String>().Utf8Value().rfind('/', 0) != 0) {
      Napi::TypeError::New(env, "paths[" + std::to_string(i) + "] must be an absolute file path string")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    paths.push_back(item.As<Napi::String>().Utf8Value());
  }
  auto* worker = new ReadFilesWorker(env, info[0].As<Napi::String>().Utf8Value(), std::move(paths));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

std::string ErrnoMessage(int err) {
  char buf[128];
  // GNU strerror_r: returns the text, which may or may not live in buf.
  return std::string(strerror_r(err, buf, sizeof buf));
}

bool RunInNetns(const std::string& nsPath, const std::function<void()>& work, std::string* error, int* err) {
  ThreadJob job{&nsPath, &work, {}, 0};
  pthread_t thread;
  int rc = pthread_create(&thread, nullptr, NetnsThreadMain, &job);
  if (rc != 0) {
    *error = "cannot start a thread to enter network namespace " + nsPath + ": " + ErrnoMessage(rc);
    *err = rc;
    return false;
  }
  pthread_join(thread, nullptr);
  if (!job.error.empty()) {
    *error = job.error;
    *err = job.err;
    return false;
  }
  return true;
}

void PromiseWorker::OnError(const Napi::Error& e) {
  Napi::Env env = Env();
  Napi::Error error = Napi::Error::New(env, e.Message());
  if (errno_ != 0) {
    const char* name = strerrorname_np(errno_);
    if (name) error.Set("code", Napi::String::New(env, name));
    error.Set("errno", Napi::Number::New(env, errno_));
  }
  deferred_.Reject(error.Value());
}

void InitNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("readFilesInNetns", Napi::Function::New(env, ReadFilesInNetns, "readFilesInNetns"));
}

}  // namespace wstrace
