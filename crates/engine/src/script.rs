//! A user's TorchScript module as a model: loaded with tch's `TrainableCModule`, its
//! parameters registered in the job's `VarStore` (so the optimizers, clipping, checkpoints
//! and diagnostics treat them like a built-in model's), switched between `train()` and
//! `eval()` like the built-in models. The module itself, with its buffers (batch-norm
//! running statistics, which a `VarStore` does not hold), travels in checkpoints as the
//! bytes of `torch.jit.save`, under [`MODULE_KEY`].

use std::io::{Read, Seek, SeekFrom};

use tch::{CModule, Device, Kind, Tensor, TrainableCModule, nn};

use super::EngineError;
use gradstream_domain::ModelParameter;

/// The checkpoint entry holding a TorchScript model's module (a `u8` tensor of its saved
/// bytes). It sits with the model's variables (`model.…`), so whatever carries a model's
/// variables (ensemble members, the final variables) carries its module too.
pub const MODULE_KEY: &str = "model.@module";

pub struct ScriptModule {
    module: TrainableCModule,
    /// Rows are reshaped to `[batch, c, h, w]` when set.
    input_shape: Option<[i64; 3]>,
    /// The mode the module was last switched to.
    training: Option<bool>,
    /// Its parameters by dotted PyTorch name, sharing storage with the `VarStore`'s.
    params: Vec<(String, Tensor)>,
}

impl ScriptModule {
    /// Loads a module saved by `torch.jit.save` onto `vs`'s device, its parameters added to
    /// `vs` (frozen ones as non-trainable variables).
    pub fn load(
        bytes: &[u8],
        vs: &nn::VarStore,
        input_shape: Option<[u32; 3]>,
    ) -> Result<Self, EngineError> {
        // Dotted names, in the order TrainableCModule adds the parameters.
        let dotted: Vec<String> = load_module(bytes, Device::Cpu)?
            .named_parameters()?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let module = TrainableCModule::load_data(&mut std::io::Cursor::new(bytes), vs.root())?;
        let vars = vs.variables();
        let params = dotted
            .into_iter()
            .filter_map(|name| {
                let var = vars.get(&name.replace('.', "_"))?;
                Some((name, var.shallow_clone()))
            })
            .collect::<Vec<_>>();
        if params.len() != vars.len() {
            return Err(EngineError::Internal(format!(
                "{} of the TorchScript module's {} parameters reached the variable store (two names that differ only in '.' and '_'?)",
                params.len(),
                vars.len()
            )));
        }
        Ok(Self {
            module,
            input_shape: input_shape.map(|s| s.map(i64::from)),
            training: None,
            params,
        })
    }

    /// Logits, in training or evaluation mode.
    pub fn forward_t(&mut self, x: &Tensor, train: bool) -> Result<Tensor, EngineError> {
        if self.training != Some(train) {
            if train {
                self.module.f_set_train()?;
            } else {
                self.module.f_set_eval()?;
            }
            self.training = Some(train);
        }
        let x = match self.input_shape {
            Some([c, h, w]) => x.f_view([-1, c, h, w])?,
            None => x.shallow_clone(),
        };
        Ok(self.module.forward_ts(&[x])?)
    }

    /// Parameters of two or more dimensions (weights), by layer name (the parameter name
    /// without `.weight`), sharing storage.
    pub fn layer_weights(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .filter(|(_, t)| t.dim() >= 2)
            .map(|(n, t)| {
                let layer = n.strip_suffix(".weight").unwrap_or(n);
                (layer.to_string(), t.shallow_clone())
            })
            .collect()
    }

    /// Every parameter by dotted name (CPU copies): the `state_dict` without buffers.
    pub fn parameters(&self) -> Result<Vec<(String, Tensor)>, EngineError> {
        self.params
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.f_detach()?.f_to_device(Device::Cpu)?.copy())))
            .collect()
    }

    /// The module as `torch.jit.save` writes it, with its current parameters and buffers.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EngineError> {
        save_to_memory(|path| self.module.save(path))
    }

    /// [`to_bytes`](Self::to_bytes) as the checkpoint entry.
    pub fn checkpoint_entry(&self) -> Result<(String, Tensor), EngineError> {
        Ok((
            MODULE_KEY.to_string(),
            Tensor::from_slice(&self.to_bytes()?),
        ))
    }
}

fn load_module(bytes: &[u8], device: Device) -> Result<CModule, EngineError> {
    Ok(CModule::load_data_on_device(
        &mut std::io::Cursor::new(bytes),
        device,
    )?)
}

/// The module bytes carried in checkpoint tensors, if any.
pub fn module_bytes(tensors: &[(String, Tensor)]) -> Result<Option<Vec<u8>>, EngineError> {
    tensors
        .iter()
        .find(|(n, _)| n == MODULE_KEY)
        .map(|(_, t)| Ok(Vec::<u8>::try_from(t)?))
        .transpose()
}

/// Runs `save` with a path that is an anonymous in-memory file (Linux `memfd`), and
/// returns what it wrote: libtorch saves modules to paths only, and nothing of a job is
/// written to disk outside the writer thread.
fn save_to_memory(
    save: impl FnOnce(&str) -> Result<(), tch::TchError>,
) -> Result<Vec<u8>, EngineError> {
    use std::os::fd::FromRawFd;
    let name = c"gradstream-module";
    // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new fd we own.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(EngineError::Internal(format!(
            "cannot create an in-memory file for the module: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    save(&format!("/proc/self/fd/{fd}"))?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| EngineError::Internal(format!("cannot read the saved module: {e}")))?;
    Ok(bytes)
}

/// What an uploaded file holds: its parameters, if it loads as TorchScript and has at
/// least one trainable parameter. The error says what is wrong, for people.
pub fn inspect(path: &std::path::Path) -> Result<Vec<ModelParameter>, String> {
    let module = CModule::load_on_device(path, Device::Cpu).map_err(|e| {
        format!(
            "the file is not a TorchScript module ({}); save one with torch.jit.save(torch.jit.script(model), path) or torch.jit.trace; a state_dict saved with torch.save cannot be trained",
            first_line(&e.to_string())
        )
    })?;
    let params = module
        .named_parameters()
        .map_err(|e| format!("cannot list the module's parameters: {e}"))?;
    let params: Vec<ModelParameter> = params
        .into_iter()
        .map(|(name, t)| ModelParameter {
            name,
            shape: t.size(),
            requires_grad: t.requires_grad(),
        })
        .collect();
    if !params.iter().any(|p| p.requires_grad) {
        return Err(
            "the module has no trainable parameter (none with requires_grad); there is nothing to train"
                .into(),
        );
    }
    Ok(params)
}

/// Runs the module at `path` on zeros shaped like the job's rows (`width` features, as
/// `input_shape` when set), in evaluation and training mode, and checks it returns
/// `[batch, classes]`. The error names the shape it got and the shape expected. Returns
/// whether a training-mode forward of one row fails (batch norm) where one of two works.
pub fn check_fit(
    path: &std::path::Path,
    input_shape: Option<[u32; 3]>,
    width: usize,
    classes: usize,
) -> Result<bool, String> {
    let mut module = CModule::load_on_device(path, Device::Cpu)
        .map_err(|e| format!("cannot load the module: {}", first_line(&e.to_string())))?;
    let shape = |n: i64| -> Vec<i64> {
        match input_shape {
            Some(s) => [n]
                .into_iter()
                .chain(s.iter().map(|&d| i64::from(d)))
                .collect(),
            None => vec![n, width as i64],
        }
    };
    let described = |n: i64| {
        let s = shape(n);
        match input_shape {
            Some(_) => format!("{s:?} ({n} rows of the dataset's {width} features read as images)"),
            None => format!("{s:?} ({n} rows of the dataset's {width} features)"),
        }
    };
    let hint = match input_shape {
        Some(_) => "its forward must accept [batch, channels, height, width] float32 images",
        None => {
            "its forward must accept [batch, features] float32 rows; for an image model, set input_shape (channels, height, width)"
        }
    };
    let run = |module: &CModule, n: i64| -> Result<Tensor, String> {
        let x = Tensor::zeros(shape(n), (Kind::Float, Device::Cpu));
        tch::no_grad(|| module.forward_ts(&[x])).map_err(|e| {
            format!(
                "the module's forward fails on a float32 input of shape {}: {}; {hint}",
                described(n),
                torch_reason(&e.to_string())
            )
        })
    };
    let mode = |e: tch::TchError| {
        format!(
            "cannot switch the module's mode: {}",
            torch_reason(&e.to_string())
        )
    };
    module.f_set_eval().map_err(mode)?;
    let out = run(&module, 2)?;
    let expected = [2, classes as i64];
    if out.size() != expected {
        return Err(format!(
            "the module's forward on a float32 input of shape {} returned shape {:?}; expected {expected:?}: one logit per class for each row ({classes} classes)",
            described(2),
            out.size()
        ));
    }
    if !matches!(
        out.kind(),
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    ) {
        return Err(format!(
            "the module's forward returned {:?} values; it must return floating-point logits",
            out.kind()
        ));
    }
    module.f_set_train().map_err(mode)?;
    let _ = run(&module, 2)?;
    Ok(run(&module, 1).is_err())
}

/// The first non-empty line, without tch's "Internal torch error: " prefix.
fn first_line(s: &str) -> &str {
    let line = s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim();
    line.strip_prefix("Internal torch error: ").unwrap_or(line)
}

/// The line of a libtorch error that says what went wrong: TorchScript errors carry a
/// traceback and end with the Python-style exception line (`RuntimeError: …`), whose
/// message is returned; other errors say it on their first line.
pub fn torch_reason(s: &str) -> String {
    let exception = s.lines().map(str::trim).rfind(|l| {
        l.split_once(':')
            .is_some_and(|(head, _)| head.ends_with("Error") && !head.contains(' '))
    });
    match exception {
        Some(line) => line.split_once(':').map_or(line, |(_, m)| m.trim()),
        None => first_line(s),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::torch_reason;

    #[test]
    fn the_reason_is_the_exception_message_or_the_first_line() {
        let traceback = "Internal torch error: The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript (most recent call last):\n  File \"x.py\", line 3\n    return self.fc(x)\nRuntimeError: mat1 and mat2 shapes cannot be multiplied (2x7 and 4x16)\n";
        assert_eq!(
            torch_reason(traceback),
            "mat1 and mat2 shapes cannot be multiplied (2x7 and 4x16)"
        );
        let plain = "Internal torch error: Expected 4-dimensional input\nException raised from check at aten/src/x.cpp:1";
        assert_eq!(torch_reason(plain), "Expected 4-dimensional input");
    }
}
