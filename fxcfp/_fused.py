"""The back-step on the CPU in C++: one call for the whole back-step, built on first use.

A layer's step in pure torch is some fifteen small calls, and on a deep network their dispatch
is most of the back-step's time. Here one call does every layer of every sample, in reverse
topological order, and for each layer, kernel by kernel in ascending depth: the scores, their
minimum and maximum, the gate, the channels' depths and the edge count, with no
``kernels x channels`` temporary; it stops at the first kernel after which no remaining one can
lower a channel's depth (the early exit of :mod:`fxcfp._backstep`, per kernel instead of per
chunk), which in ascending depth is "every channel reached". A layer whose kernels share one
depth (the common case) needs no sort; a channel's update is branch-free so it vectorises. A
back-step some of whose layers the C++ pass does not cover calls it per layer (``layer_step``)
and takes the pure-torch path for the others.

It computes what :func:`fxcfp._backstep.gate` computes, bit for bit: the same float32 products,
an exact minimum and maximum, NaN passing nothing, the bar as ``low + float(θ) * span`` rounded
after each operation (built with ``-ffp-contract=off``, so no fused multiply-add), the same ends
(θ = 1 is the maximum itself, one channel is a link, equal scores pass nothing).

The extension is compiled by ``torch.utils.cpp_extension.load_inline`` once per machine and
environment, in a background thread: calls made while it builds, and every call where it cannot
be built (no compiler, ``FXCFP_NO_EXTENSION=1``), take the exact pure-torch path. Only float32
layers on the CPU without ``top_k`` use it. The compiled module is kept in fxcfp's own cache
(:func:`cache_directory`), one folder per extension version, torch build, Python ABI and
source, so two environments never rebuild over each other; a build runs in a folder of its own and its module
is moved into place only when complete, so a process that exits mid-build leaves nothing the
next one trips on.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import sysconfig
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["NAME", "cache_directory", "extension", "loaded", "plan", "prepared", "usable", "wait"]

# bumped whenever the source changes: the name is the module's, and its cache folder's
NAME = "fxcfp_backstep_v6"

_SOURCE = r"""
#include <torch/extension.h>
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <tuple>
#include <unordered_set>
#include <vector>

static const int32_t UNREACHED = 1 << 30;

// On x86-64 Linux with GCC the step is also compiled for AVX2, picked at load time by what the
// CPU has (the build's own flags stay the baseline's, so a cached module runs on any x86-64).
// The same IEEE products, minimum, maximum and comparisons: lanes do not change a result.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FXCFP_CLONES __attribute__((target_clones("avx2", "default")))
#define FXCFP_INLINE __attribute__((always_inline)) inline
#else
#define FXCFP_CLONES
#define FXCFP_INLINE inline
#endif

// The gate of one kernel: which of its n channels pass. Returns false when none can (NaN, all
// scores equal); scores holds a[c] * w[c].
static FXCFP_INLINE bool gate_row(const float* a, const float* w, int64_t n, float theta,
                                  bool top, float* scores, float* bar_out) {
  float low = std::numeric_limits<float>::infinity();
  float high = -std::numeric_limits<float>::infinity();
  int nan = 0;
  // vectorised (OpenMP simd, no fast-math): products are IEEE products whatever the lanes, a
  // minimum and a maximum do not depend on the order they are taken in, and a row with a NaN
  // is refused below, so the lanes give the scalar loop's low and high exactly (a zero's sign
  // never changes a comparison against the bar)
#pragma omp simd reduction(min:low) reduction(max:high) reduction(|:nan)
  for (int64_t c = 0; c < n; ++c) {
    float s = a[c] * w[c];
    scores[c] = s;
    nan |= s != s;
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

// One weighted layer as the step reads it: pooled is B x in (row b at a + b * in), weight
// out x pg, sources in x width global ids, members in (nullptr: edges not counted).
struct Layer {
  const float* a;
  const float* w;
  const int32_t* m;
  const int64_t* src;
  int64_t in, out, pg, width, first_id;
};

// One thread's buffers, sized once for the largest layer of a call.
struct Scratch {
  std::vector<float> scores;
  std::vector<int32_t> cd;
  std::vector<int64_t> order, sorted, start;
  void fit(const Layer& l) {
    if ((int64_t)scores.size() < l.pg) scores.resize(l.pg);
    if ((int64_t)cd.size() < l.in) cd.resize(l.in);
    if ((int64_t)order.size() < l.out) { order.resize(l.out); sorted.resize(l.out); }
  }
};

// The layer's expanded kernels (depth below limit) in ascending depth, ties in kernel order
// (what a stable sort of all kernels gives, the others following): into s.order; how many.
// A layer's kernels usually sit at one depth or none, and then there is nothing to sort.
static int64_t expanded_order(const int32_t* d, int64_t out, int64_t limit, Scratch& s) {
  int64_t* order = s.order.data();
  int64_t n = 0;
  int32_t lo = std::numeric_limits<int32_t>::max(), hi = -1;
  for (int64_t k = 0; k < out; ++k) {
    const int32_t kd = d[k];
    if (kd < limit) {
      order[n++] = k;
      lo = kd < lo ? kd : lo;
      hi = kd > hi ? kd : hi;
    }
  }
  if (n < 2 || lo == hi) return n;
  const int64_t range = (int64_t)hi - lo + 1;
  if (range > n) {
    std::stable_sort(order, order + n, [d](int64_t x, int64_t y) { return d[x] < d[y]; });
    return n;
  }
  // few distinct depths: a counting sort, stable by construction
  s.start.assign(range + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++s.start[d[order[i]] - lo + 1];
  for (int64_t r = 0; r < range; ++r) s.start[r + 1] += s.start[r];
  for (int64_t i = 0; i < n; ++i) s.sorted[s.start[d[order[i]] - lo]++] = order[i];
  std::copy(s.sorted.begin(), s.sorted.begin() + n, order);
  return n;
}

// One layer of sample b, in place: reads the layer's kernel depths from row_depth (the
// sample's ids), lowers the depths of the producers its passing channels map to (padding
// points at the sink id), writes the edges and visited kernels. Kernels are visited in
// ascending depth; with early, the visit stops at the first kernel after which none left can
// lower a channel; with count_rest, the kernels it skipped are still counted (edges only).
FXCFP_CLONES static void step_one(const Layer& l, int64_t b, int32_t* row_depth, int64_t limit,
                                  float theta, bool top, bool early, bool count_rest,
                                  int64_t* edges, int64_t* visited, Scratch& s) {
  const float* a = l.a + b * l.in;
  const int32_t* d = row_depth + l.first_id;
  const int64_t pg = l.pg, out_pg = l.out / (l.in / pg);
  *visited = l.out;
  *edges = l.m ? 0 : -1;
  const int64_t n = expanded_order(d, l.out, limit, s);
  if (n == 0) return;  // nothing of the layer is expanded
  int32_t* cd = s.cd.data();
  std::fill(cd, cd + l.in, UNREACHED);
  const int64_t* order = s.order.data();
  float* scores = s.scores.data();
  // in ascending depth a channel's first selecting kernel gives its depth, and no later one
  // can lower it: a kernel can lower only the channels still unreached, so the early exit is
  // "every channel reached"
  int64_t count = 0, unreached = l.in, pos = 0;
  if (pg == 1) {
    // depth-wise: a kernel's one channel is a link unless its score is NaN (gate_row's n == 1)
    for (; pos < n; ++pos) {
      if (early && unreached == 0) break;
      const int64_t kernel = order[pos], channel = out_pg == 1 ? kernel : kernel / out_pg;
      const float score = a[channel] * l.w[kernel];
      if (score != score) continue;
      if (l.m) count += l.m[channel];
      if (cd[channel] == UNREACHED) {
        cd[channel] = d[kernel] + 1;
        --unreached;
      }
    }
  }
  for (; pos < n; ++pos) {
    if (early && unreached == 0) break;
    const int64_t kernel = order[pos], first = kernel / out_pg * pg;
    const int32_t next = d[kernel] + 1;
    float bar;
    if (!gate_row(a + first, l.w + kernel * pg, pg, theta, top, scores, &bar)) continue;
    int32_t* group_cd = cd + first;
    // branch-free, in 32-bit lanes, so the loop vectorises: pass and fresh are all-ones
    // masks; a channel passing for the first time takes this kernel's depth + 1
    int32_t row = 0, fresh = 0;
    if (l.m) {
      const int32_t* group_m = l.m + first;
#pragma omp simd reduction(+:row) reduction(-:fresh)
      for (int64_t c = 0; c < pg; ++c) {
        const int32_t pass = -static_cast<int32_t>(scores[c] >= bar);
        const int32_t current = group_cd[c];
        const int32_t is_new = pass & -static_cast<int32_t>(current == UNREACHED);
        row += pass & group_m[c];
        group_cd[c] = current ^ ((current ^ next) & is_new);
        fresh -= is_new;
      }
    } else {
#pragma omp simd reduction(-:fresh)
      for (int64_t c = 0; c < pg; ++c) {
        const int32_t pass = -static_cast<int32_t>(scores[c] >= bar);
        const int32_t current = group_cd[c];
        const int32_t is_new = pass & -static_cast<int32_t>(current == UNREACHED);
        group_cd[c] = current ^ ((current ^ next) & is_new);
        fresh -= is_new;
      }
    }
    count += row;
    unreached -= fresh;
  }
  int64_t seen = pos;  // stopped early, or every expanded kernel visited
  if (l.m && count_rest) {
    // the kernels the early exit skipped lower no depth, but their edges are counted here,
    // gate and count only, so the pyramid never runs a second pass for them
    for (; pos < n; ++pos) {
      float bar;
      const int64_t kernel = order[pos], first = kernel / out_pg * pg;
      if (!gate_row(a + first, l.w + kernel * pg, pg, theta, top, scores, &bar)) continue;
      const int32_t* group_m = l.m + first;
      int64_t row = 0;
#pragma omp simd reduction(+:row)
      for (int64_t c = 0; c < pg; ++c) row += scores[c] >= bar ? group_m[c] : 0;
      count += row;
    }
    seen = l.out;
  }
  if (l.m) *edges = count;
  *visited = seen;
  for (int64_t c = 0; c < l.in; ++c) {
    const int32_t value = cd[c];
    if (value == UNREACHED) continue;
    const int64_t* ids = l.src + c * l.width;
    for (int64_t k = 0; k < l.width; ++k) {
      int32_t& target = row_depth[ids[k]];
      target = value < target ? value : target;
    }
  }
}

static Layer make_layer(const torch::Tensor& pooled, const torch::Tensor& weight,
                        const torch::Tensor& members, const torch::Tensor& sources,
                        int64_t first_id) {
  TORCH_CHECK(pooled.is_contiguous() && weight.is_contiguous() && sources.is_contiguous(),
              "fxcfp back-step: contiguous tensors expected");
  TORCH_CHECK(weight.size(0) == 0 || pooled.size(1) % weight.size(1) == 0,
              "fxcfp back-step: pooled width is not a multiple of the kernel width");
  return Layer{pooled.data_ptr<float>(), weight.data_ptr<float>(),
               members.numel() ? members.data_ptr<int32_t>() : nullptr,
               sources.data_ptr<int64_t>(), pooled.size(1), weight.size(0), weight.size(1),
               sources.size(1), first_id};
}

// Layers (in topological order, visited in reverse) of every sample, one sample per task:
// depth rows of ids ints from dp, edges / visited rows of columns int64s from e / v, layer i
// in column column0 + i. With roots (width per sample), each sample's depth row is first set
// to UNREACHED but for its roots, at 0.
static void run(const std::vector<Layer>& layers, int64_t batch, int32_t* dp, int64_t ids,
                int64_t* e, int64_t* v, int64_t columns, int64_t column0, int64_t limit,
                double threshold, bool early, bool count_rest, const int64_t* roots,
                int64_t width) {
  const float theta = static_cast<float>(threshold);
  const bool top = threshold == 1.0;
  const int64_t count = (int64_t)layers.size();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    Scratch s;
    for (const Layer& l : layers) s.fit(l);
    for (int64_t b = begin; b < end; ++b) {
      int32_t* row = dp + b * ids;
      if (roots) {
        std::fill(row, row + ids, UNREACHED);
        for (int64_t r = 0; r < width; ++r) row[roots[b * width + r]] = 0;
      }
      const int64_t at = b * columns + column0;
      for (int64_t i = count - 1; i >= 0; --i) {
        step_one(layers[i], b, row, limit, theta, top, early, count_rest, e + at + i,
                 v + at + i, s);
      }
    }
  });
}

// One layer for every sample (the per-layer form, for a back-step some of whose layers take
// the pure-torch path): edges / visited column index.
void layer_step(torch::Tensor pooled, torch::Tensor weight, torch::Tensor depth,
                int64_t first_id, int64_t limit, double threshold, torch::Tensor members,
                torch::Tensor sources, bool early, bool count_rest, torch::Tensor edges,
                torch::Tensor visited, int64_t index) {
  const std::vector<Layer> one{make_layer(pooled, weight, members, sources, first_id)};
  run(one, pooled.size(0), depth.data_ptr<int32_t>(), depth.size(1), edges.data_ptr<int64_t>(),
      visited.data_ptr<int64_t>(), edges.size(1), index, limit, threshold, early, count_rest,
      nullptr, 0);
}

// What the whole back-step reads of a network's layers that does not change between calls,
// made once per list of layers (the tensors are held here, so the pointers stay valid).
struct Plan {
  std::vector<torch::Tensor> weights, members, sources;
  std::vector<int64_t> first;
  Plan(std::vector<torch::Tensor> w, std::vector<torch::Tensor> m, std::vector<torch::Tensor> s,
       std::vector<int64_t> f)
      : weights(std::move(w)), members(std::move(m)), sources(std::move(s)), first(std::move(f)) {
    TORCH_CHECK(members.size() == weights.size() && sources.size() == weights.size()
                && first.size() == weights.size(), "fxcfp back-step: one entry per layer expected");
  }
};

// The whole back-step: every layer (the plan's, in topological order) of every sample, the
// layers in reverse, one sample per task; from the roots (B x R global ids, the sink id
// total_ids for padding) to (depth B x total_ids, edges, visited B x layers), made here so a
// call is one dispatch. None, with nothing done, where an input is not float32 (the roots
// int64) on the CPU: the caller takes the per-layer path then.
std::optional<std::tuple<torch::Tensor, torch::Tensor, torch::Tensor>> backstep_all(
    const Plan& plan, std::vector<torch::Tensor> pooled, torch::Tensor roots, int64_t total_ids,
    int64_t limit, double threshold, bool count_rest) {
  const size_t count = plan.weights.size();
  TORCH_CHECK(pooled.size() == count, "fxcfp back-step: one pooled input per layer expected");
  if (roots.scalar_type() != torch::kLong || !roots.device().is_cpu() || roots.dim() != 2) {
    return std::nullopt;
  }
  const int64_t batch = roots.size(0), ids = total_ids + 1, layers = (int64_t)count;
  for (size_t i = 0; i < count; ++i) {
    const torch::Tensor& p = pooled[i];
    if (p.scalar_type() != torch::kFloat || !p.device().is_cpu() || p.dim() != 2
        || p.size(0) != batch) {
      return std::nullopt;
    }
    if (!p.is_contiguous()) pooled[i] = p.contiguous();
  }
  const torch::Tensor root = roots.contiguous();
  const int64_t* rp = root.data_ptr<int64_t>();
  const int64_t width = root.size(1);
  for (int64_t r = 0; r < batch * width; ++r) {
    TORCH_CHECK(rp[r] >= 0 && rp[r] <= total_ids, "fxcfp back-step: a root id outside [0, ",
                total_ids, "]");
  }
  std::vector<Layer> all;
  all.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    all.push_back(make_layer(pooled[i], plan.weights[i], plan.members[i], plan.sources[i],
                             plan.first[i]));
  }
  // every entry of edges and visited is written by step_one
  torch::Tensor depth = torch::empty({batch, ids}, torch::kInt);
  torch::Tensor edges = torch::empty({batch, layers}, torch::kLong);
  torch::Tensor visited = torch::empty({batch, layers}, torch::kLong);
  run(all, batch, depth.data_ptr<int32_t>(), ids, edges.data_ptr<int64_t>(),
      visited.data_ptr<int64_t>(), layers, 0, limit, threshold, true, count_rest, rp, width);
  return std::make_tuple(depth.narrow(1, 0, total_ids), edges, visited);
}

// Edges leaving the kernels rows of one sample's layer: every passing pair, one edge per
// member of its channel's map.
// The edges of the kernels rows[0..n): compiled for AVX2 too, like step_one (the baseline build
// took twice as long: 102 ms for the lazy count of 3D ResNeXt-101's skipped kernels).
FXCFP_CLONES static int64_t count_kernels(const float* a, const float* w, const int64_t* r,
                                          const int32_t* m, int64_t n, int64_t pg,
                                          int64_t out_pg, float theta, bool top, float* scores) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    float bar;
    const int64_t first = r[i] / out_pg * pg;  // the kernel's group's first channel
    if (!gate_row(a + first, w + r[i] * pg, pg, theta, top, scores, &bar)) continue;
    int64_t row = 0;
#pragma omp simd reduction(+:row)
    for (int64_t c = 0; c < pg; ++c) row += scores[c] >= bar ? m[first + c] : 0;
    count += row;
  }
  return count;
}

int64_t count_rows(torch::Tensor pooled, torch::Tensor weight, torch::Tensor rows,
                   double threshold, torch::Tensor members) {
  const int64_t in = pooled.size(0), n = rows.size(0);
  const int64_t pg = weight.size(1), out_pg = weight.size(0) / (in / pg);
  std::vector<float> scores(pg);
  return count_kernels(pooled.data_ptr<float>(), weight.data_ptr<float>(),
                       rows.data_ptr<int64_t>(), members.data_ptr<int32_t>(), n, pg, out_pg,
                       static_cast<float>(threshold), threshold == 1.0, scores.data());
}

// fxcfp._view.tree_state, the same walk and the same tuple: the ids of every module (each once,
// in modules() order) and of its parameters and buffers, and whether a module below the root
// has a forward (pre-)hook. None where a module is not laid out as nn.Module lays it out (the
// caller walks in Python then). It runs on every call: in Python it was 0.6 ms for the 359
// modules of timm's regnety_002.
static pybind11::object tree_state(pybind11::handle model) {
  namespace py = pybind11;
  static PyObject* const names[] = {
      PyUnicode_InternFromString("_parameters"), PyUnicode_InternFromString("_buffers"),
      PyUnicode_InternFromString("_forward_hooks"),
      PyUnicode_InternFromString("_forward_pre_hooks"), PyUnicode_InternFromString("_modules")};
  std::vector<py::object> stack{py::reinterpret_borrow<py::object>(model)};
  std::unordered_set<PyObject*> seen;
  std::vector<PyObject*> ids;
  std::vector<py::object> children;
  bool hooked = false;
  while (!stack.empty()) {
    py::object module = std::move(stack.back());
    stack.pop_back();
    if (!seen.insert(module.ptr()).second) continue;
    ids.push_back(module.ptr());
    // nn.Module keeps these in the instance dictionary: read there, past attribute lookup
    PyObject* own = PyObject_GenericGetDict(module.ptr(), nullptr);
    if (own == nullptr) {
      PyErr_Clear();
      return py::none();
    }
    py::object state = py::reinterpret_steal<py::object>(own);
    PyObject* dicts[5];
    for (int i = 0; i < 5; ++i) {
      dicts[i] = PyDict_GetItemWithError(own, names[i]);  // borrowed, held by the module
      if (dicts[i] == nullptr || !PyDict_Check(dicts[i])) {
        PyErr_Clear();
        return py::none();
      }
    }
    // the modules' tensors stay referenced by their dictionaries for the whole walk: no
    // Python code runs in it (attributes found in the instance dictionary)
    for (int i = 0; i < 2; ++i) {
      Py_ssize_t pos = 0;
      PyObject *key, *value;
      while (PyDict_Next(dicts[i], &pos, &key, &value)) ids.push_back(value);
    }
    if ((PyDict_GET_SIZE(dicts[2]) || PyDict_GET_SIZE(dicts[3])) &&
        module.ptr() != model.ptr())
      hooked = true;
    children.clear();
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(dicts[4], &pos, &key, &value))
      if (value != Py_None) children.push_back(py::reinterpret_borrow<py::object>(value));
    for (auto child = children.rbegin(); child != children.rend(); ++child)
      stack.push_back(std::move(*child));
  }
  py::tuple out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    PyObject* id = PyLong_FromVoidPtr(ids[i]);
    if (id == nullptr) throw py::error_already_set();
    PyTuple_SET_ITEM(out.ptr(), i, id);
  }
  return py::make_tuple(out, py::bool_(hooked));
}

// The pooled-weight cache's key: for each layer (its module's parameter dictionary, the
// weight's name, the parameter the plan was built with), the parameter's version and data
// pointer, flat; None where a dictionary no longer holds that parameter or a weight is
// computed per call (the caller reads those in Python).
static pybind11::object weight_versions(const pybind11::list& owners) {
  namespace py = pybind11;
  std::vector<int64_t> found;
  found.reserve(2 * owners.size());
  for (const py::handle owner : owners) {
    PyObject* item = owner.ptr();
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) return py::none();
    PyObject* params = PyTuple_GET_ITEM(item, 0);
    PyObject* param = PyTuple_GET_ITEM(item, 2);
    if (!PyDict_Check(params) || !THPVariable_Check(param)) return py::none();
    PyObject* now = PyDict_GetItemWithError(params, PyTuple_GET_ITEM(item, 1));
    if (now != param) {
      PyErr_Clear();
      return py::none();
    }
    const at::Tensor& tensor = THPVariable_Unpack(param);
    found.push_back(static_cast<int64_t>(tensor._version()));
    found.push_back(reinterpret_cast<int64_t>(tensor.data_ptr()));
  }
  py::tuple out(found.size());
  for (size_t i = 0; i < found.size(); ++i) out[i] = py::int_(found[i]);
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  // the work reads and writes tensors only: other Python threads run meanwhile
  namespace py = pybind11;
  py::class_<Plan>(module, "Plan")
      .def(py::init<std::vector<torch::Tensor>, std::vector<torch::Tensor>,
                    std::vector<torch::Tensor>, std::vector<int64_t>>());
  module.def("layer_step", &layer_step, py::call_guard<py::gil_scoped_release>());
  module.def("backstep_all", &backstep_all, py::call_guard<py::gil_scoped_release>());
  module.def("count_rows", &count_rows, py::call_guard<py::gil_scoped_release>());
  module.def("tree_state", &tree_state);  // reads Python objects: keeps the GIL
  module.def("weight_versions", &weight_versions);
}
"""

_lock = threading.Lock()
_state: dict[str, Any] = {"module": None, "thread": None, "error": None}
# plan() per list of layers: weak references to its layers, the C++ plan (or None); a few lists
# at a time (an analyzer has one per input shape; per-clip contrasts make one per call)
_plans: dict[int, tuple[list[weakref.ref[Any]], Any]] = {}
_PLANS = 8
# no fused multiply-add (the bar is rounded as torch rounds it); OpenMP simd for the loops
_FLAGS = ("-O3", "-ffp-contract=off", "-fopenmp-simd")
# a build folder nobody has touched for this long is an interrupted build's
_STALE_SECONDS = 3600.0


def cache_directory() -> Path:
    """Where the compiled module lives: ``$TORCH_EXTENSIONS_DIR/fxcfp`` when that is set, else
    ``${XDG_CACHE_HOME:-~/.cache}/fxcfp/extensions``; then one folder per extension version,
    torch version and Python ABI, and a hash of the source, the flags and torch's location
    (two environments with one torch version still build their own: a build records its
    include paths)."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        base = Path(root) / "fxcfp"
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = Path(cache) / "fxcfp" / "extensions"
    abi = sysconfig.get_config_var("SOABI") or sys.implementation.cache_tag
    # the source and flags too: an edit never loads a module built from the text before it
    built_from = hashlib.sha1("\0".join([_SOURCE, *_FLAGS, os.path.dirname(torch.__file__)]
                                        ).encode()).hexdigest()[:12]
    return base / f"{NAME}-torch{torch.__version__}-{abi}-{built_from}"


def _suffix() -> str:
    return sysconfig.get_config_var("EXT_SUFFIX") or ".so"


def _load(path: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _clear_stale(directory: Path) -> None:
    """Remove build folders of processes that are gone (or silent for an hour)."""
    for folder in directory.glob("build-*"):
        try:
            pid = int(folder.name.split("-")[1])
            if pid == os.getpid():
                continue
            stale = not _alive(pid) or time.time() - folder.stat().st_mtime > _STALE_SECONDS
        except (ValueError, IndexError, OSError):
            stale = True
        if stale:
            shutil.rmtree(folder, ignore_errors=True)


def _compile(directory: Path) -> Any:
    """Build in a folder of this process's own, then move the module into ``directory``: the
    move is atomic, so the cache holds a complete module or none."""
    import logging

    # importing cpp_extension logs "No CUDA runtime is found" on a CPU machine with a
    # CUDA_HOME: a warning about a build the user never asked for, on the command line's stderr
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import LIB_EXT, load_inline
    finally:
        logger.setLevel(level)

    directory.mkdir(parents=True, exist_ok=True)
    _clear_stale(directory)
    build = directory / f"build-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir()
    try:
        module = load_inline(
            name=NAME, cpp_sources=[_SOURCE], build_directory=str(build),
            extra_cflags=list(_FLAGS), verbose=False)
        os.replace(build / f"{NAME}{LIB_EXT}", directory / f"{NAME}{_suffix()}")
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return module


def _build() -> None:
    try:
        directory = cache_directory()
        compiled = directory / f"{NAME}{_suffix()}"
        module = None
        if compiled.exists():
            try:
                module = _load(compiled)
            except ImportError:  # not a module this process can load: build it afresh
                module = None
        _state["module"] = module if module is not None else _compile(directory)
    except Exception as err:  # no compiler, no headers, no cache folder: the pure-torch path
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


def loaded() -> Any | None:
    """The compiled module if it is loaded already; never starts a build."""
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
    """Layers the fused pass covers: float32 on the CPU (grouped and depth-wise too), no
    top_k."""
    return (top_k is None and pooled.dtype == torch.float32
            and pooled.device.type == "cpu" and layer.weight.dtype == torch.float32)


def plan(module: Any, layers: Sequence[Any]) -> Any | None:
    """The C++ plan of a list of layers (their :func:`prepared` arguments, packed once), or
    ``None`` where some layer is not covered. Kept per list object while its layers live: the
    analyzer passes the same list on every call of a plan, and a plan found for a list whose
    layers changed would be another network's."""
    key = id(layers)
    entry = _plans.get(key)
    if entry is not None and len(entry[0]) == len(layers) and all(
            ref() is layer for ref, layer in zip(entry[0], layers)):
        return entry[1]
    arguments = [layer.fused_arguments for layer in layers]
    made = None
    if None not in arguments:
        weights, members, sources = (list(t) for t in zip(*arguments)) if arguments else ([], [], [])
        made = module.Plan(weights, members, sources, [layer.first_id for layer in layers])
    with _lock:
        # entries whose layers are gone hold tensors nobody else does: dropped first
        for old in [k for k, (refs, _) in _plans.items() if any(r() is None for r in refs)]:
            del _plans[old]
        _plans[key] = ([weakref.ref(layer) for layer in layers], made)
        while len(_plans) > _PLANS:
            del _plans[next(iter(_plans))]
    return made


def prepared(layer: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """A layer's arguments to the C++ pass, ``(weight, members, sources)`` contiguous (members
    empty where edges are not counted); ``None`` for a layer it does not cover (not float32 on
    the CPU). The pooled input and ``top_k`` are the call's and checked per call."""
    weight = layer.weight
    if weight.dtype != torch.float32 or weight.device.type != "cpu":
        return None
    members = (torch.empty(0, dtype=torch.int32) if layer.members is None
               else layer.members.to(torch.int32).contiguous())
    return weight.contiguous(), members, layer.sources.to(torch.int64).contiguous()
