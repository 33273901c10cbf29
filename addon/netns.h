#pragma once
#include <napi.h>

#include <functional>
#include <string>

namespace wstrace {

void InitNetns(Napi::Env env, Napi::Object exports);

// Runs `work` on a fresh thread that has joined the network namespace named
// by the nsfs file at `nsPath`, and waits for it. The calling thread never
// changes namespace. Returns false with `*error` set to one sentence when the
// thread cannot be started or the namespace cannot be entered (then `work`
// does not run), and `*err` to the errno behind it.
bool RunInNetns(const std::string& nsPath, const std::function<void()>& work, std::string* error, int* err);

// strerror(err) as a std::string.
std::string ErrnoMessage(int err);

// A Promise-returning worker: Execute() fills the result or calls Fail();
// the promise rejects with an Error whose `code` is the errno name when one is
// known (ENOENT, EPERM, ...), so callers can tell "gone" from "forbidden".
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* resourceName)
      : Napi::AsyncWorker(env, resourceName), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Fail(const std::string& message, int err) {
    errno_ = err;
    SetError(message);
  }
  void OnError(const Napi::Error& e) override;
  void Resolve(Napi::Value value) { deferred_.Resolve(value); }

 private:
  Napi::Promise::Deferred deferred_;
  int errno_ = 0;
};

}  // namespace wstrace
