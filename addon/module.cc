// Module entry: each part registers its functions on the exports object.
#include <napi.h>

#include "netns.h"
#include "sockdiag.h"
#include "tracer.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  wstrace::InitTracer(env, exports);
  wstrace::InitSockDiag(env, exports);
  wstrace::InitNetns(env, exports);
  return exports;
}

NODE_API_MODULE(wstrace, Init)
