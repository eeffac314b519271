#pragma once
// Stand-in for the header LibTorch generates at build time, missing from Debian's CPU
// LibTorch. Only the cuda_syntax check (tests/launch) puts this folder on the include path.
#define C10_CUDA_BUILD_SHARED_LIBS
