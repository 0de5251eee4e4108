//! The fused multi-tensor optimizer steps of libtorch (`csrc/fused_optim.cpp`): one call
//! updates every parameter, with the kernels behind torch.optim's `fused=True`.

use std::ffi::{CStr, c_char};

use tch::{TchError, Tensor};
use torch_sys::C_tensor;

unsafe extern "C" {
    fn gs_fused_adam(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        exp_avgs: *const *const C_tensor,
        exp_avg_sqs: *const *const C_tensor,
        steps: *const *const C_tensor,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        decoupled: i32,
    ) -> *mut c_char;

    fn gs_fused_sgd(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        momentum_buffers: *const *const C_tensor,
        n: usize,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
        nesterov: i32,
        first: i32,
    ) -> *mut c_char;
}

fn handles(ts: &[&Tensor]) -> Vec<*const C_tensor> {
    ts.iter().map(|t| t.as_ptr()).collect()
}

/// The error a shim call returned, if any (its message is freed here).
fn checked(message: *mut c_char) -> Result<(), TchError> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated string the shim malloc'ed for us.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    unsafe { libc::free(message.cast()) };
    Err(TchError::Torch(text))
}

/// The parameters of one Adam step, all of the same length.
pub(crate) struct AdamStep<'a> {
    pub params: Vec<&'a Tensor>,
    pub grads: Vec<&'a Tensor>,
    pub exp_avgs: Vec<&'a Tensor>,
    pub exp_avg_sqs: Vec<&'a Tensor>,
    /// 0-dim float32 step counts on the parameters' device; each gains 1.
    pub steps: Vec<&'a Tensor>,
}

/// `torch.optim.Adam(fused=True)` (AdamW when `decoupled`), amsgrad and maximize off.
pub(crate) fn adam(
    s: &AdamStep<'_>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    weight_decay: f64,
    eps: f64,
    decoupled: bool,
) -> Result<(), TchError> {
    let n = s.params.len();
    assert!(
        [&s.grads, &s.exp_avgs, &s.exp_avg_sqs, &s.steps]
            .iter()
            .all(|l| l.len() == n),
        "every list of a fused Adam step has one tensor per parameter"
    );
    let (p, g, m, v, t) = (
        handles(&s.params),
        handles(&s.grads),
        handles(&s.exp_avgs),
        handles(&s.exp_avg_sqs),
        handles(&s.steps),
    );
    // SAFETY: each array holds `n` live tensor handles, borrowed for the call.
    checked(unsafe {
        gs_fused_adam(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            t.as_ptr(),
            n,
            lr,
            beta1,
            beta2,
            weight_decay,
            eps,
            i32::from(decoupled),
        )
    })
}

/// `torch.optim.SGD(fused=True)`, dampening 0: `buffers` are the momentum buffers (none
/// without momentum); `first` when they are new (they become the gradients).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgd(
    params: &[&Tensor],
    grads: &[&Tensor],
    buffers: &[&Tensor],
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    nesterov: bool,
    first: bool,
) -> Result<(), TchError> {
    let n = params.len();
    assert_eq!(grads.len(), n, "one gradient per parameter");
    assert!(
        buffers.len() == if momentum == 0.0 { 0 } else { n },
        "one momentum buffer per parameter, or none without momentum"
    );
    let (p, g, b) = (handles(params), handles(grads), handles(buffers));
    // SAFETY: `p` and `g` hold `n` live handles, `b` `n` or none (then never read).
    checked(unsafe {
        gs_fused_sgd(
            p.as_ptr(),
            g.as_ptr(),
            b.as_ptr(),
            n,
            lr,
            momentum,
            weight_decay,
            i32::from(nesterov),
            i32::from(first),
        )
    })
}
