"""Reference outputs of the OFFICIAL SAM2ImagePredictor / SAM2VideoPredictor (sam2==1.1.0) around a
(tiny random-weight) model, written to MODEL_DIR/reference/ for the host reference and the Rust tests.

Layout:
  reference/cases.json           what was run (prompts in image pixels, flags, tensor keys)
  reference/image.png            image-mode input (RGB, 8-bit)
  reference/image.safetensors    per case: <name>.low_res_logits [M,256,256] f32 (clamped +-32 as
                                 returned by predict), <name>.iou [M] f32, <name>.masks_packed
                                 (np.packbits of the bool [M,H,W] masks)
  reference/frames/NNNNN.png     video frames (the decoded pixels of the JPEGs the official loader read)
  reference/video.safetensors    per step s, frame t, object o: s{s}.f{t}.o{o}.mask_packed (packbits of
                                 the [H,W] mask = video-res logits > 0), s{s}.f{t}.o{o}.score [1] f32
                                 (object score logit), s{s}.f{t}.o{o}.obj_ptr [C] f32 (object pointer),
                                 s{s}.f{t}.o{o}.low_res_logits_pool4 [64,64] f32
                                 (the stored 256x256 low-res logits, 4x4 mean-pooled); for an
                                 add_mask step, s{s}.input_mask_packed (packbits of the [H,W] painted
                                 mask given to add_new_mask; its shape is the step's mask_shape)
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

FILL_HOLE_NOTE = (
    "The official fill_holes_in_mask_scores needs the sam2._C CUDA extension (get_connected_components); "
    "a CPU-only install skips it with a warning. To make the reference match what a CUDA user of the "
    "official package gets, get_connected_components is replaced by a CPU implementation with the "
    "kernel's semantics (8-connectivity, per-pixel component area), the same as "
    "sam2_host_ref.connected_components_8. fill_hole_area=8 as in build_sam2_video_predictor."
)


def _scene(w, h, seed, t=0.0):
    """A textured 'photo'-like scene with a few objects; t moves two of them (video)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = np.stack([
        90 + 60 * np.sin(xx / w * 3.1 + 0.5) + 20 * np.cos(yy / h * 5.0),
        110 + 40 * np.cos(xx / w * 2.0) * np.sin(yy / h * 2.5),
        140 + 50 * np.sin((xx + yy) / (w + h) * 4.0),
    ], -1)
    bg += rng.normal(0, 10, size=(h // 16 + 1, w // 16 + 1, 3)).repeat(16, 0).repeat(16, 1)[:h, :w]
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5))
    d = ImageDraw.Draw(img)
    # static objects
    d.rectangle([0.70 * w, 0.62 * h, 0.93 * w, 0.90 * h], fill=(40, 60, 170), outline=(10, 10, 60), width=3)
    d.polygon([(0.08 * w, 0.92 * h), (0.22 * w, 0.58 * h), (0.36 * w, 0.92 * h)], fill=(60, 170, 60))
    # moving objects
    cx, cy = (0.22 + 0.35 * t) * w, (0.30 + 0.10 * t) * h
    d.ellipse([cx - 0.12 * w, cy - 0.13 * h, cx + 0.12 * w, cy + 0.13 * h], fill=(210, 50, 40), outline=(90, 10, 10), width=4)
    bx, by = (0.62 - 0.25 * t) * w, (0.22 + 0.20 * t) * h
    d.rectangle([bx - 0.08 * w, by - 0.10 * h, bx + 0.08 * w, by + 0.10 * h], fill=(235, 210, 60), outline=(80, 70, 10), width=3)
    arr = np.asarray(img).astype(np.float32)
    arr += rng.normal(0, 1.0, size=arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _components_8(mask: np.ndarray):
    """sam2_host_ref.connected_components_8 (the spec: labels > 0 on the foreground, per-pixel component
    area, 8-connectivity), computed by OpenCV: the same components, ~100x faster than the pure-Python
    flood fill, which dominated the video reference's run time. Label numbering may differ; the official
    fill_holes_in_mask_scores only uses labels > 0 and the areas."""
    import cv2

    m = np.ascontiguousarray(mask, dtype=np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8, ltype=cv2.CV_32S)
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.int32)[labels]
    fg = m > 0
    return np.where(fg, labels, 0).astype(np.int32), np.where(fg, areas, 0).astype(np.int32)


def _patch_connected_components():
    import sam2.utils.misc as misc

    def get_connected_components(mask):
        m = mask.to(torch.uint8).cpu().numpy()
        labels = np.zeros(m.shape, np.int32)
        counts = np.zeros(m.shape, np.int32)
        for i in range(m.shape[0]):
            labels[i, 0], counts[i, 0] = _components_8(m[i, 0] > 0)
        return torch.from_numpy(labels).to(mask.device), torch.from_numpy(counts).to(mask.device)

    misc.get_connected_components = get_connected_components


class _BankTracer:
    """Records, for every memory-attention call of the official model, which frames the memory bank
    used: spatial memories as [frame, t_pos] and object pointers as [frame, temporal distance].
    Frames are identified by exact equality of the bf16 maskmem_features / obj_ptr with the outputs
    stored in the object's output dict; t_pos from the maskmem_tpos_enc added to the positions."""

    def __init__(self, model):
        import sam2.modeling.sam2_base as base

        self.model, self.base = model, base
        self.ctx = None
        self.trace = {}  # (frame, id(output_dict)) -> entry (last call wins)
        self.last_pos = None
        orig_pe = base.get_1d_sine_pe
        orig_ma = model.memory_attention.forward
        orig_ts = model.track_step

        def pe(pos_inds, dim, temperature=10000):
            self.last_pos = pos_inds.detach().clone()
            return orig_pe(pos_inds, dim, temperature)

        def ts(*a, **k):
            self.ctx = (k.get("frame_idx", a[0] if a else None), k.get("output_dict"), k.get("num_frames"))
            return orig_ts(*a, **k)

        def ma(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0, **kw):
            # **kw: EdgeTAM's MemoryAttention also takes num_spatial_mem
            self._record(memory, memory_pos, num_obj_ptr_tokens)
            return orig_ma(curr=curr, memory=memory, curr_pos=curr_pos, memory_pos=memory_pos,
                           num_obj_ptr_tokens=num_obj_ptr_tokens, **kw)

        base.get_1d_sine_pe = pe
        model.memory_attention.forward = ma
        model.track_step = ts

    @staticmethod
    def _tokens(x):
        """One object's stored memory [Cm,H,W] (SAM 2) or [T,Cm] (EdgeTAM: perceiver latents) as
        tokens [T,Cm], the order memory attention reads them in."""
        return x.float() if x.ndim == 2 else x.float().flatten(1).t()

    def _record(self, memory, memory_pos, n_ptr_tok):
        m = self.model
        frame, od, num_frames = self.ctx
        Cm, C = m.mem_dim, m.hidden_dim
        outs = list(od["cond_frame_outputs"].items()) + list(od["non_cond_frame_outputs"].items())
        n_sp = memory.shape[0] - n_ptr_tok
        maskmem_pos = None
        for t, o in outs:
            if o.get("maskmem_pos_enc") is not None:
                maskmem_pos = self._tokens(o["maskmem_pos_enc"][-1][0])
                break
        HW = maskmem_pos.shape[0] if maskmem_pos is not None else n_sp  # tokens per memory
        spatial = []
        for s in range(n_sp // HW):
            blk = memory[s * HW:(s + 1) * HW, 0].float()
            f = [t for t, o in outs if o["maskmem_features"] is not None and
                 torch.equal(self._tokens(o["maskmem_features"][0]), blk)]
            tp = memory_pos[s * HW:(s + 1) * HW, 0] - maskmem_pos
            tpos = m.maskmem_tpos_enc.reshape(m.num_maskmem, Cm)
            idx = int(torch.argmin((tpos - tp.mean(0)).abs().sum(1)))
            spatial.append([f[0] if len(f) == 1 else f, m.num_maskmem - 1 - idx])
        pointers = []
        if n_ptr_tok:
            k = C // Cm
            ptrs = memory[n_sp:, 0].reshape(-1, k * Cm)
            t_diff_max = min(num_frames, m.max_obj_ptrs_in_encoder) - 1
            dists = (self.last_pos * t_diff_max).round().long().tolist() if m.add_tpos_enc_to_obj_ptrs else [None] * len(ptrs)
            for p, d in zip(ptrs, dists):
                f = [t for t, o in outs if torch.equal(o["obj_ptr"][0], p)]
                if d is None and len(f) == 1 and not m.use_signed_tpos_enc_to_obj_ptrs:
                    # no temporal encoding to read it from (EdgeTAM: add_tpos_enc_to_obj_ptrs=false):
                    # the unsigned distance _prepare_memory_conditioned_features puts in pos_list
                    d = abs(int(frame) - int(f[0]))
                pointers.append([f[0] if len(f) == 1 else f, d])
        self.trace[(int(frame), id(od))] = {"spatial": spatial, "pointers": pointers}


def _packbits(m: np.ndarray) -> np.ndarray:
    return np.packbits(m.astype(bool).reshape(-1))


def case_names(num_frames: int = 10):
    """The names of the reference cases in the order write_reference runs them (progress lines)."""
    return [f"image_{c}" for c in IMAGE_CASES] + [f"video_step{i}_{op}" for i, op in enumerate(VIDEO_STEPS)]


# Case names / step kinds of write_reference (it asserts that its cases match).
IMAGE_CASES = ("one_click", "click_and_negative", "box", "box_and_points", "refine_with_mask")
VIDEO_STEPS = ("add", "add", "add_mask", "propagate", "propagate", "add", "add_mask", "propagate", "propagate")


def write_reference(model, ref_dir: str, seed: int = 0, num_frames: int = 10, verbose: bool = True,
                    on_case=None, video_predictor: str = "SAM2VideoPredictor built by build_sam2_video_predictor "
                                                         "(apply_postprocessing=True)"):
    """on_case(index, total, name), if given, is called before each case (1-based index);
    video_predictor describes the predictor in cases.json."""
    from safetensors.numpy import save_file
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    _patch_connected_components()
    if os.path.isdir(ref_dir):
        shutil.rmtree(ref_dir)
    os.makedirs(os.path.join(ref_dir, "frames"))
    # model.add_all_frames_to_correct_as_cond is True (set in build.py, recorded in the manifest)

    def log(*a):
        if verbose:
            print(*a, flush=True)

    # ---------------- image cases ----------------
    W, H = 1200, 700  # width is downscaled (antialias matters), height upscaled
    img = _scene(W, H, seed + 11, t=0.3)
    Image.fromarray(img).save(os.path.join(ref_dir, "image.png"))
    pred = SAM2ImagePredictor(model)
    pred.set_image(img)
    red = [0.22 * W + 0.35 * 0.3 * W, 0.33 * H]
    cases = [
        {"name": "one_click", "point_coords": [red], "point_labels": [1], "multimask_output": True},
        {"name": "click_and_negative", "point_coords": [red, [0.62 * W, 0.75 * H]], "point_labels": [1, 0],
         "multimask_output": False},
        {"name": "box", "box": [0.69 * W, 0.60 * H, 0.94 * W, 0.91 * H], "multimask_output": False},
        {"name": "box_and_points", "box": [0.06 * W, 0.55 * H, 0.38 * W, 0.94 * H],
         "point_coords": [[0.22 * W, 0.80 * H], [0.30 * W, 0.62 * H]], "point_labels": [1, 0], "multimask_output": False},
        {"name": "refine_with_mask", "point_coords": [red, [0.62 * W, 0.75 * H]], "point_labels": [1, 0],
         "multimask_output": False, "mask_input_from": {"case": "one_click", "index": "best_iou"}},
    ]
    names = case_names(num_frames)
    assert [c["name"] for c in cases] == list(IMAGE_CASES)

    def announce(i):
        if on_case is not None:
            on_case(i + 1, len(names), names[i])

    tensors = {}
    outs = {}
    for ci, case in enumerate(cases):
        announce(ci)
        case["point_coords"] = [[round(float(x), 2) for x in p] for p in case.get("point_coords", [])] or None
        if case["point_coords"] is None:
            case.pop("point_coords")
        if "box" in case:
            case["box"] = [round(float(x), 2) for x in case["box"]]
        mask_input = None
        if "mask_input_from" in case:
            src = outs[case["mask_input_from"]["case"]]
            best = int(np.argmax(src[1]))
            case["mask_input_from"]["index"] = best
            mask_input = src[2][best][None]
        masks, iou, low = pred.predict(
            point_coords=np.array(case["point_coords"], np.float32) if "point_coords" in case else None,
            point_labels=np.array(case["point_labels"], np.int32) if "point_labels" in case else None,
            box=np.array(case["box"], np.float32) if "box" in case else None,
            mask_input=mask_input, multimask_output=case["multimask_output"])
        outs[case["name"]] = (masks, iou, low)
        n = case["name"]
        tensors[f"{n}.low_res_logits"] = np.ascontiguousarray(low.astype(np.float32))
        tensors[f"{n}.iou"] = np.ascontiguousarray(iou.astype(np.float32))
        tensors[f"{n}.masks_packed"] = _packbits(masks)
        case["masks_shape"] = list(masks.shape)
        log(f"[reference] image {n}: fg fraction {[round(float(m.mean()), 3) for m in masks]}, iou {np.round(iou, 3).tolist()}")
    save_file(tensors, os.path.join(ref_dir, "image.safetensors"))
    image_spec = {"file": "image.png", "tensors": "image.safetensors", "width": W, "height": H,
                  "predictor": "SAM2ImagePredictor(model) defaults: mask_threshold=0, max_hole_area=0, max_sprinkle_area=0",
                  "cases": cases}

    # ---------------- video case ----------------
    VW, VH = 480, 270
    tmp = tempfile.mkdtemp(prefix="sam2ref_")
    frame_files = []
    for i in range(num_frames):
        fr = _scene(VW, VH, seed + 23, t=i / (num_frames - 1))
        jp = os.path.join(tmp, f"{i:05d}.jpg")
        Image.fromarray(fr).save(jp, quality=92)
        dec = np.asarray(Image.open(jp).convert("RGB"))  # exactly what the official loader decodes
        rel = f"frames/{i:05d}.png"
        Image.fromarray(dec).save(os.path.join(ref_dir, rel))
        frame_files.append(rel)
    tracer = _BankTracer(model)
    state = model.init_state(tmp, offload_video_to_cpu=True)
    shutil.rmtree(tmp, ignore_errors=True)

    def pos(t, fx, fy):  # the red ellipse / yellow box centres at time t (pixels)
        return [round((fx(t)) * VW, 2), round(fy(t) * VH, 2)]

    t3, t7 = 3 / (num_frames - 1), 7 / (num_frames - 1)
    red3 = pos(t3, lambda t: 0.22 + 0.35 * t, lambda t: 0.30 + 0.10 * t)
    yb = lambda t: [round((0.62 - 0.25 * t - 0.09) * VW, 2), round((0.22 + 0.20 * t - 0.11) * VH, 2),
                    round((0.62 - 0.25 * t + 0.09) * VW, 2), round((0.22 + 0.20 * t + 0.11) * VH, 2)]
    red7 = pos(t7, lambda t: 0.22 + 0.35 * t, lambda t: 0.30 + 0.10 * t)
    t6 = 6 / (num_frames - 1)

    def painted(shape, xy):  # a hand-painted mask: a polygon a little off the object's outline
        im = Image.new("L", (VW, VH), 0)
        getattr(ImageDraw.Draw(im), shape)(xy, fill=1)
        return np.asarray(im).astype(bool)

    steps = [
        {"op": "add", "frame": 3, "obj_id": 1, "points": [red3], "labels": [1]},
        {"op": "add", "frame": 3, "obj_id": 2, "box": yb(t3)},
        # a new object given by a painted mask (the static green triangle, roughly)
        {"op": "add_mask", "frame": 3, "obj_id": 3,
         "mask": painted("polygon", [(0.10 * VW, 0.93 * VH), (0.21 * VW, 0.60 * VH), (0.24 * VW, 0.61 * VH),
                                     (0.35 * VW, 0.90 * VH)])},
        {"op": "propagate", "reverse": False},
        {"op": "propagate", "reverse": True},
        {"op": "add", "frame": 7, "obj_id": 1, "points": [red7, [round(0.5 * VW, 2), round(0.85 * VH, 2)]], "labels": [1, 0]},
        # a painted correction of a tracked object (the yellow box on frame 6, drawn a bit large)
        {"op": "add_mask", "frame": 6, "obj_id": 2,
         "mask": painted("rectangle", [(yb(t6)[0] - 4, yb(t6)[1] - 3), (yb(t6)[2] + 5, yb(t6)[3] + 2)])},
        {"op": "propagate", "reverse": False},
        # reverse pass over both conditioning frames. (Starting it at the last frame would crash the
        # official code: no object pointer -> an all-bfloat16 memory -> dtype error in memory attention.)
        {"op": "propagate", "reverse": True, "start_frame_idx": num_frames - 2},
    ]
    assert tuple(s["op"] for s in steps) == VIDEO_STEPS
    vt = {}
    for si, step in enumerate(steps):
        announce(len(cases) + si)
        tracer.trace = {}
        if step["op"] == "add":
            t, obj_ids, logits = model.add_new_points_or_box(
                state, frame_idx=step["frame"], obj_id=step["obj_id"],
                points=np.array(step["points"], np.float32) if "points" in step else None,
                labels=np.array(step["labels"], np.int32) if "labels" in step else None,
                box=np.array(step["box"], np.float32) if "box" in step else None)
            results = [(t, obj_ids, logits)]
        elif step["op"] == "add_mask":
            mask = step.pop("mask")
            step["mask_shape"] = list(mask.shape)
            vt[f"s{si}.input_mask_packed"] = _packbits(mask)
            results = [model.add_new_mask(state, frame_idx=step["frame"], obj_id=step["obj_id"], mask=mask)]
        else:
            results = list(model.propagate_in_video(state, start_frame_idx=step.get("start_frame_idx"),
                                                    reverse=step["reverse"]))
        step["frames"] = [int(r[0]) for r in results]
        # memory bank used on every memory-conditioned (frame, object) of this step
        od_to_obj = {id(state["output_dict_per_obj"][i]): state["obj_idx_to_id"][i] for i in state["obj_idx_to_id"]}
        step["memory_banks"] = [
            {"frame": f, "obj_id": od_to_obj[od], **bank} for (f, od), bank in tracer.trace.items()]
        fg = []
        for t, obj_ids, logits in results:
            for oi, obj_id in enumerate(obj_ids):
                m = (logits[oi, 0] > 0).cpu().numpy()
                vt[f"s{si}.f{t}.o{obj_id}.mask_packed"] = _packbits(m)
                obj_idx = state["obj_id_to_idx"][obj_id]
                out = None
                for d in (state["temp_output_dict_per_obj"][obj_idx], state["output_dict_per_obj"][obj_idx]):
                    out = out or d["cond_frame_outputs"].get(t) or d["non_cond_frame_outputs"].get(t)
                if out is not None:
                    vt[f"s{si}.f{t}.o{obj_id}.score"] = out["object_score_logits"].reshape(1).float().numpy()
                    vt[f"s{si}.f{t}.o{obj_id}.obj_ptr"] = np.ascontiguousarray(
                        out["obj_ptr"].reshape(-1).float().numpy())
                    # 4x4 mean-pooled low-res logits [64,64] f32: a compact, sensitive fingerprint
                    low = out["pred_masks"][0, 0].float().numpy()
                    vt[f"s{si}.f{t}.o{obj_id}.low_res_logits_pool4"] = np.ascontiguousarray(
                        low.reshape(64, 4, 64, 4).mean(axis=(1, 3)).astype(np.float32))
                fg.append(round(float(m.mean()), 3))
        log(f"[reference] video step {si} {step['op']} frames {step['frames']} fg {fg}")
    save_file(vt, os.path.join(ref_dir, "video.safetensors"))
    video_spec = {
        "frames": frame_files, "width": VW, "height": VH, "tensors": "video.safetensors",
        "predictor": video_predictor,
        "fill_hole_area": int(model.fill_hole_area), "fill_hole_note": FILL_HOLE_NOTE,
        "add_all_frames_to_correct_as_cond": bool(model.add_all_frames_to_correct_as_cond),
        "non_overlap_masks": bool(model.non_overlap_masks),
        "binarize_mask_from_pts_for_mem_enc": bool(model.binarize_mask_from_pts_for_mem_enc),
        "steps": steps,
    }
    spec = {"format": "pixelrefer-studio-sam2-reference", "version": 1, "seed": seed,
            "coordinates": "pixels of the original image/frame, (x, y); boxes XYXY",
            "image": image_spec, "video": video_spec}
    with open(os.path.join(ref_dir, "cases.json"), "w") as f:
        json.dump(spec, f, indent=1)
    return spec
