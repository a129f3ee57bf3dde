"""What fit prints: nothing (verbose=0), or per epoch a progress bar (tqdm, when installed
and writing to a terminal) or one line when the epoch ends."""
import sys


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    def __init__(self, verbose, stream=None):
        self.verbose = verbose
        self.stream = sys.stdout if stream is None else stream
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self._tqdm = _tqdm() if verbose and isatty else None
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
