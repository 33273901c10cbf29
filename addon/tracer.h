#pragma once
#include <napi.h>

namespace wstrace {
void InitTracer(Napi::Env env, Napi::Object exports);
}
