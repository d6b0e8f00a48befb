"""One fused C++ pass per layer for the back-step on the CPU, built on first use.

A layer's step in pure torch is some fifteen small calls, and on a deep network their dispatch
is most of the back-step's time. Here one call per layer does, kernel by kernel in ascending
depth: the scores, their minimum and maximum, the gate, the channels' depths and the edge count,
with no ``kernels x channels`` temporary; it stops at the first kernel after which no remaining
one can lower a channel's depth (the early exit of :mod:`fxcfp._backstep`, per kernel instead of
per chunk).

It computes what :func:`fxcfp._backstep.gate` computes, bit for bit: the same float32 products,
an exact minimum and maximum, NaN passing nothing, the bar as ``low + float(θ) * span`` rounded
after each operation (built with ``-ffp-contract=off``, so no fused multiply-add), the same ends
(θ = 1 is the maximum itself, one channel is a link, equal scores pass nothing).

The extension is compiled by ``torch.utils.cpp_extension.load_inline`` into torch's extension
cache on disk, once per machine, in a background thread: calls made while it builds, and every
call where it cannot be built (no compiler, ``FXCFP_NO_EXTENSION=1``), take the exact pure-torch
path. Only float32 layers without groups or ``top_k`` use it.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import torch

__all__ = ["extension", "usable", "wait"]

_SOURCE = r"""
#include <torch/extension.h>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

static const int32_t UNREACHED = 1 << 30;

// The gate of one kernel: which of its n channels pass. Returns false when none can (NaN, all
// scores equal); scores holds a[c] * w[c].
static bool gate_row(const float* a, const float* w, int64_t n, float theta, bool top,
                     float* scores, float* bar_out) {
  float low = std::numeric_limits<float>::infinity();
  float high = -std::numeric_limits<float>::infinity();
  bool nan = false;
  for (int64_t c = 0; c < n; ++c) {
    float s = a[c] * w[c];
    scores[c] = s;
    nan |= std::isnan(s);
    low = s < low ? s : low;
    high = s > high ? s : high;
  }
  if (nan) return false;
  if (n == 1) { *bar_out = -std::numeric_limits<float>::infinity(); return true; }
  float span = high - low;
  if (span == 0.0f) return false;
  if (top) { *bar_out = high; return true; }
  float scaled = theta * span;
  *bar_out = low + scaled;
  return true;
}

// One layer for every sample, in place: reads the layer's kernel depths from depth (B x ids),
// lowers the depths of the producers its passing channels map to (sources, in x K; padding
// points at the sink column), and writes edges and visited kernels into column index of
// edges / visited (B x layers). Kernels are visited in ascending depth (a stable sort); with
// early, the visit stops at the first kernel after which none left can lower a channel.
void layer_step(torch::Tensor pooled, torch::Tensor weight, torch::Tensor depth,
                int64_t first_id, int64_t limit, double threshold, torch::Tensor members,
                torch::Tensor sources, bool early, torch::Tensor edges, torch::Tensor visited,
                int64_t index) {
  const int64_t batch = pooled.size(0), in = pooled.size(1), out = weight.size(0);
  const int64_t ids = depth.size(1), width = sources.size(1), layers = edges.size(1);
  const float theta = static_cast<float>(threshold);
  const bool top = threshold == 1.0;
  const float* w = weight.data_ptr<float>();
  const int32_t* m = members.numel() ? members.data_ptr<int32_t>() : nullptr;
  const int64_t* src = sources.data_ptr<int64_t>();
  int64_t* e = edges.data_ptr<int64_t>();
  int64_t* v = visited.data_ptr<int64_t>();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(in);
    std::vector<int32_t> cd(in);
    std::vector<int64_t> order(out);
    for (int64_t b = begin; b < end; ++b) {
      const float* a = pooled.data_ptr<float>() + b * in;
      int32_t* row_depth = depth.data_ptr<int32_t>() + b * ids;
      const int32_t* d = row_depth + first_id;
      v[b * layers + index] = out;
      e[b * layers + index] = m ? 0 : -1;
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [d](int64_t x, int64_t y) { return d[x] < d[y]; });
      if (out == 0 || d[order[0]] >= limit) continue;  // nothing of the layer is expanded
      std::fill(cd.begin(), cd.end(), UNREACHED);
      int64_t count = 0, pending = 0, bound = -1;
      int64_t pos = 0;
      for (; pos < out; ++pos) {
        const int32_t kd = d[order[pos]];
        if (kd >= limit) break;  // ascending: nothing further is expanded
        if (early) {
          if (kd + 1 != bound) {  // a new depth: which channels could it still lower?
            bound = kd + 1;
            pending = 0;
            for (int64_t c = 0; c < in; ++c) pending += cd[c] > bound;
          }
          if (pending == 0) break;
        }
        float bar;
        if (!gate_row(a, w + order[pos] * in, in, theta, top, scores.data(), &bar)) continue;
        for (int64_t c = 0; c < in; ++c) {
          if (scores[c] >= bar) {
            if (m) count += m[c];
            if (cd[c] > kd + 1) {
              if (early && cd[c] > bound) --pending;
              cd[c] = kd + 1;
            }
          }
        }
      }
      if (m) e[b * layers + index] = count;
      // stopped early; or at max_depth, where the rest is not expanded (nothing left to count)
      v[b * layers + index] = pos;
      for (int64_t c = 0; c < in; ++c) {
        if (cd[c] == UNREACHED) continue;
        for (int64_t k = 0; k < width; ++k) {
          int32_t& target = row_depth[src[c * width + k]];
          target = cd[c] < target ? cd[c] : target;
        }
      }
    }
  });
}

// Edges leaving the kernels rows of one sample's layer: every passing pair, one edge per
// member of its channel's map.
int64_t count_rows(torch::Tensor pooled, torch::Tensor weight, torch::Tensor rows,
                   double threshold, torch::Tensor members) {
  const int64_t in = pooled.size(0), n = rows.size(0);
  const float theta = static_cast<float>(threshold);
  const bool top = threshold == 1.0;
  const float* a = pooled.data_ptr<float>();
  const float* w = weight.data_ptr<float>();
  const int64_t* r = rows.data_ptr<int64_t>();
  const int32_t* m = members.data_ptr<int32_t>();
  std::vector<float> scores(in);
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    float bar;
    if (!gate_row(a, w + r[i] * in, in, theta, top, scores.data(), &bar)) continue;
    for (int64_t c = 0; c < in; ++c) count += scores[c] >= bar ? m[c] : 0;
  }
  return count;
}
"""

_lock = threading.Lock()
_state: dict[str, Any] = {"module": None, "thread": None, "error": None}


def _build() -> None:
    try:
        import logging

        # importing cpp_extension logs "No CUDA runtime is found" on a CPU machine with a
        # CUDA_HOME: a warning about a build the user never asked for, on the command line's stderr
        logger = logging.getLogger("torch.utils.cpp_extension")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            from torch.utils.cpp_extension import load_inline
        finally:
            logger.setLevel(level)

        module = load_inline(
            name="fxcfp_backstep_v2", cpp_sources=[_SOURCE], functions=["layer_step", "count_rows"],
            extra_cflags=["-O3", "-ffp-contract=off"], verbose=False)
        _state["module"] = module
    except Exception as err:  # no compiler, no headers: the pure-torch path stays
        _state["error"] = err


def extension() -> Any | None:
    """The compiled module, or ``None`` while it builds or where it cannot be built; the first
    call starts the build in a background thread."""
    if _state["module"] is not None or _state["error"] is not None:
        return _state["module"]
    if os.environ.get("FXCFP_NO_EXTENSION") == "1":
        return None
    with _lock:
        if _state["thread"] is None:
            thread = threading.Thread(target=_build, name="fxcfp-build", daemon=True)
            _state["thread"] = thread
            thread.start()
    return _state["module"]


def wait() -> Any | None:
    """Build (or load from the disk cache) now and return the module, ``None`` if it cannot be
    built; the error is kept in ``_state['error']``."""
    if os.environ.get("FXCFP_NO_EXTENSION") == "1":
        return None
    extension()
    thread = _state["thread"]
    if thread is not None:
        thread.join()
    return _state["module"]


def usable(layer: Any, pooled: torch.Tensor, top_k: int | None) -> bool:
    """Layers the fused pass covers: float32 on the CPU, one group, no top_k."""
    return (top_k is None and layer.groups == 1 and pooled.dtype == torch.float32
            and pooled.device.type == "cpu" and layer.weight.dtype == torch.float32)
