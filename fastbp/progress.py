"""What fit prints: nothing (verbose=0); per epoch a progress bar (tqdm, when installed
and writing to a terminal) or else one line when the epoch ends (verbose=1); or always one
line per epoch, never a bar (verbose=2, as Keras, e.g. for log files)."""
import numbers
import sys

#: What each accepted ``verbose`` means (True and False are 1 and 0).
VERBOSE_LEVELS = {0: "silent", 1: "a progress bar per epoch (one line without a terminal)",
                  2: "one line per epoch"}


def check_verbose(verbose, name="verbose"):
    """Return ``verbose`` as 0, 1 or 2; anything else raises naming ``name``."""
    if not isinstance(verbose, numbers.Integral) or int(verbose) not in VERBOSE_LEVELS:
        levels = "; ".join(f"{level} {meaning}" for level, meaning in VERBOSE_LEVELS.items())
        kind = type(verbose).__name__
        raise (ValueError if isinstance(verbose, numbers.Integral) else TypeError)(
            f"{name} must be 0, 1 or 2 ({levels}), got {kind} {verbose!r}")
    return int(verbose)


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    def __init__(self, verbose, stream=None):
        self.verbose = check_verbose(verbose)
        self.stream = sys.stdout if stream is None else stream
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self._tqdm = _tqdm() if self.verbose == 1 and isatty else None
        self._bar = None

    def start_epoch(self, epoch, epochs, n_samples):
        self._label = f"epoch {epoch + 1}/{epochs}"
        if self._tqdm is not None:
            self._bar = self._tqdm(total=n_samples, desc=self._label, unit="samples",
                                   file=self.stream, leave=True, dynamic_ncols=True)

    def update(self, done, loss):
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def end_epoch(self, logs):
        if not self.verbose:
            return
        figures = "  ".join(f"{key} {value:.4f}" for key, value in logs.items()
                            if key in ("loss", "accuracy") or key.startswith("val_"))
        text = (f"{figures}  {logs['epoch_time']:.3f} s  "
                f"({logs['samples_per_second']:,.0f} samples/s)")
        if self._bar is not None:
            self._bar.set_postfix_str(figures, refresh=True)
            self.close()
        else:
            print(f"{self._label}  {text}", file=self.stream, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
