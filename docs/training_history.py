"""The README's full training example: validation split, early stopping, a progress bar and
the history plot, saved as docs/training_history.png (the figure the README shows).

Run from the repository root: python docs/training_history.py [output.png]
"""
import sys

OUTPUT = sys.argv[1] if len(sys.argv) > 1 else "docs/training_history.png"

# README example begins
import fastbp as fb
from fastbp.callbacks import EarlyStopping
from fastbp.datasets import make_classification

X, y = make_classification(12000, 32, 10, noise=3.0, seed=0)
model = fb.Sequential([fb.Dense(32, 128, "relu"), fb.Dense(128, 64, "relu"),
                       fb.Dense(64, 10)], loss="cross_entropy", seed=0)
stop = EarlyStopping(monitor="val_loss", patience=4, restore_best_weights=True)
history = model.fit(X, y, epochs=60, batch_size=64, optimizer=fb.Adam(lr=1e-3),
                    validation_split=0.2, callbacks=[stop], verbose=1)
print(f"{history.stop_reason} after {history.epochs} epochs; best epoch {stop.best_epoch + 1}: "
      f"val_accuracy {history.val_accuracy[stop.best_epoch]:.3f}")
figure = history.plot(OUTPUT)  # loss, accuracy and per-layer gradient norms per epoch
# README example ends
