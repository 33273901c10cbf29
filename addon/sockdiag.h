#pragma once
#include <napi.h>

namespace wstrace {
void InitSockDiag(Napi::Env env, Napi::Object exports);
}
