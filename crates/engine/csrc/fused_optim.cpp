// The multi-tensor optimizer steps libtorch ships (the kernels behind torch.optim's
// `fused=True`), for the engine: tch does not bind them. One call updates every parameter
// of a step; on CUDA it launches the fused kernels and never synchronizes with the host.
//
// Tensors come as tch's handles (`at::Tensor*`). Each entry point returns nullptr on
// success, or a message (malloc'ed; the caller frees it) naming the failure.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/_fused_sgd.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

namespace {

std::vector<at::Tensor> list(at::Tensor **ts, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; i++) out.push_back(*ts[i]);
  return out;
}

char *message(const char *what) {
  size_t len = std::strlen(what);
  char *m = static_cast<char *>(std::malloc(len + 1));
  if (m != nullptr) std::memcpy(m, what, len + 1);
  return m;
}

template <typename F>
char *guarded(F f) {
  try {
    at::NoGradGuard no_grad;
    f();
    return nullptr;
  } catch (const std::exception &e) {
    return message(e.what());
  } catch (...) {
    return message("unknown C++ exception in a fused optimizer step");
  }
}

}  // namespace

extern "C" {

// torch.optim.Adam / AdamW (fused=True, amsgrad=False, maximize=False): adds 1 to each
// step count (0-dim float32 tensors on the parameters' device), then updates.
char *gs_fused_adam(at::Tensor **params, at::Tensor **grads, at::Tensor **exp_avgs,
                    at::Tensor **exp_avg_sqs, at::Tensor **steps, size_t n, double lr,
                    double beta1, double beta2, double weight_decay, double eps,
                    int decoupled) {
  return guarded([&] {
    auto p = list(params, n), g = list(grads, n), m = list(exp_avgs, n),
         v = list(exp_avg_sqs, n), s = list(steps, n);
    std::vector<at::Tensor> none;
    at::_foreach_add_(s, 1);
    if (decoupled) {
      at::_fused_adamw_(p, g, m, v, none, s, lr, beta1, beta2, weight_decay, eps, false,
                        false);
    } else {
      at::_fused_adam_(p, g, m, v, none, s, lr, beta1, beta2, weight_decay, eps, false,
                       false);
    }
  });
}

// torch.optim.SGD (fused=True, dampening 0, maximize=False). `first` says the momentum
// buffers are new: they become the (decayed) gradients, as torch.optim does.
char *gs_fused_sgd(at::Tensor **params, at::Tensor **grads, at::Tensor **momentum_buffers,
                   size_t n, double lr, double momentum, double weight_decay, int nesterov,
                   int first) {
  return guarded([&] {
    auto p = list(params, n), g = list(grads, n);
    std::vector<at::Tensor> b =
        momentum == 0.0 ? std::vector<at::Tensor>() : list(momentum_buffers, n);
    at::_fused_sgd_(p, g, b, weight_decay, momentum, lr, 0.0, nesterov != 0, false,
                    first != 0);
  });
}

}  // extern "C"
