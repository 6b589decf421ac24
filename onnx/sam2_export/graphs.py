"""Export-friendly wrappers around the official SAM 2 modules, one per ONNX graph.

Every wrapper reuses the official sub-modules and weights of a built SAM2Base and re-states only the
glue code of `sam2/modeling/sam2_base.py` (sam2==1.1.0) that cannot be traced as is (complex-number
RoPE, data-dependent python control flow). Line references are to that file.

Graphs (B = number of objects, N = points, S = spatial memories, P = object pointers):
  image_encoder    image[1,3,1024,1024] -> high_res_feats_0, high_res_feats_1, image_embed, pix_feat
  prompt_decoder   image_embed, high_res_feats_0/1, point_coords, point_labels, mask_input,
                   has_mask_input -> low_res_masks[B,4,256,256], iou_predictions[B,4],
                   obj_ptr[B,4,C], object_score_logits[B,1]
  memory_encoder   pix_feat, mask_logits[B,1,256,256], object_score_logits, binarize
                   -> maskmem_features[B,mem_dim,64,64]
  memory_attention pix_feat[1 or B,C,64,64], mem_features[B,S,mem_dim,64,64], mem_tpos_index[S],
                   obj_ptrs[B,P,C], obj_ptr_pos[P] -> pix_feat_with_mem[B,C,64,64]
"""
from __future__ import annotations

import contextlib
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


def _fold_hiera_pos_embed(model) -> None:
    """Hiera's absolute position embedding (`Hiera._get_pos_embed`, sam2/modeling/backbones/
    hieradet.py) is a bicubic interpolation of a parameter to the feature grid, the same for every
    image of the fixed input size; exported as is, ONNX Runtime runs that Resize on every encoder
    call (about 9% of the encoder's time in the CPU profile). Compute it once here, with PyTorch's
    own bicubic, and let the trunk return it for that grid (any other size takes the original path)."""
    trunk = getattr(getattr(model, "image_encoder", None), "trunk", None)
    if trunk is None or not hasattr(trunk, "pos_embed_window") or "_get_pos_embed" in vars(trunk):
        return
    stride = trunk.patch_embed.proj.stride
    grid = (model.image_size // stride[0], model.image_size // stride[1])
    original = trunk._get_pos_embed
    with torch.no_grad():
        table = original(grid).detach().clone()

    def folded(hw):
        if tuple(int(v) for v in hw) == grid:
            return table
        return original(hw)

    trunk._get_pos_embed = folded


def _compose_1x1(first: nn.Conv2d, then: nn.Conv2d):
    """One convolution equal to `then(first(x))` when `then` is a plain 1x1 convolution (stride 1,
    no padding, no groups): its weights mix `first`'s output channels, so they fold into `first`'s
    kernel and bias. None when either convolution does not have that form."""
    def plain(c):
        return isinstance(c, nn.Conv2d) and c.groups == 1 and c.padding_mode == "zeros"

    if not (plain(first) and plain(then)) or tuple(then.kernel_size) != (1, 1) \
            or tuple(then.stride) != (1, 1) or tuple(then.padding) != (0, 0) \
            or first.out_channels != then.in_channels:
        return None
    fused = nn.Conv2d(first.in_channels, then.out_channels, first.kernel_size, stride=first.stride,
                      padding=first.padding, dilation=first.dilation, bias=True)
    with torch.no_grad():
        mix = then.weight[:, :, 0, 0].double()  # [out, mid]
        fused.weight.copy_(torch.einsum("om,mikl->oikl", mix, first.weight.double()).float())
        b = then.bias.double() if then.bias is not None else torch.zeros(then.out_channels, dtype=torch.float64)
        if first.bias is not None:
            b = b + mix @ first.bias.double()
        fused.bias.copy_(b.float())
    return fused.to(first.weight.device)


def _neck_with_projections(model):
    """SAM2Base.forward_image projects FPN levels 0 and 1 with the mask decoder's conv_s0/conv_s1
    (256 -> 32 and 64 channels at strides 4 and 8). Levels outside the neck's fpn_top_down_levels
    are just the neck's lateral convolution (FpnNeck.forward, sam2/modeling/backbones/
    image_encoder.py), so lateral then projection is one linear map: a copy of the neck whose
    lateral convolutions for those levels already include the projection skips the 256-channel
    maps at the two largest resolutions (EdgeTAM: about a tenth of its encoder's CPU time). Returns
    (neck, levels folded), or (None, ()) when the model does not have that structure."""
    dec = getattr(model, "sam_mask_decoder", None)
    neck = getattr(getattr(model, "image_encoder", None), "neck", None)
    if not getattr(model, "use_high_res_features_in_sam", False) or dec is None \
            or not hasattr(neck, "convs") or not hasattr(neck, "fpn_top_down_levels"):
        return None, ()
    neck = copy.deepcopy(neck)
    n = len(neck.convs) - 1
    folded = []
    for level, proj in ((0, dec.conv_s0), (1, dec.conv_s1)):
        lateral = getattr(neck.convs[n - level], "conv", None)
        if level in neck.fpn_top_down_levels or lateral is None:
            continue
        fused = _compose_1x1(lateral, proj)
        if fused is not None:
            neck.convs[n - level].conv = fused
            folded.append(level)
    return (neck, tuple(folded)) if folded else (None, ())


def _reparameterized_trunk(model):
    """The image encoder's trunk with RepViT's re-parameterisable token mixers merged (EdgeTAM).
    timm's `RepVggDw` (timm/models/repvit.py) computes `bn(conv(x) + conv1(x) + x)` with a kxk and a
    1x1 depthwise convolution; its own `fuse()` writes the same linear map as one kxk depthwise
    convolution (the form RepViT is designed to be deployed in), so the graph has one convolution
    where it had two plus two full-resolution additions. A copy: the model, which writes the
    references, keeps the official modules. Any other trunk (Hiera) is returned as is."""
    trunk = getattr(getattr(model, "image_encoder", None), "trunk", None)
    if trunk is None or not any(type(mod).__name__ == "RepVggDw" for mod in trunk.modules()):
        return trunk
    trunk = copy.deepcopy(trunk)

    def fuse_children(net):
        for name, child in net.named_children():
            # timm's fuse pads the 1x1 kernel and the identity to 3x3, RepViT's only kernel size
            if type(child).__name__ == "RepVggDw" and hasattr(child, "fuse") \
                    and tuple(child.conv.c.kernel_size) == (3, 3):
                setattr(net, name, child.fuse())
            else:
                fuse_children(child)

    with torch.no_grad():
        fuse_children(trunk)
    return trunk


class ImageEncoderGraph(nn.Module):
    """SAM2Base.forward_image + _prepare_backbone_features (+ no_mem_embed as in
    SAM2ImagePredictor.set_image and _prepare_memory_conditioned_features for init cond frames).
    The high-resolution projections are folded into the neck (`_neck_with_projections`) and
    RepViT's token mixers are re-parameterised (`_reparameterized_trunk`)."""

    def __init__(self, model):
        super().__init__()
        self.m = model
        _fold_hiera_pos_embed(model)
        self.neck, self.folded = _neck_with_projections(model)
        self.trunk = _reparameterized_trunk(model)

    def _backbone_fpn(self, image):
        if self.neck is None:
            return self.m.forward_image(image)["backbone_fpn"]  # conv_s0 / conv_s1 applied
        enc, dec = self.m.image_encoder, self.m.sam_mask_decoder
        features, _ = self.neck(self.trunk(image))  # ImageEncoder.forward with the folded neck
        if enc.scalp > 0:
            features = features[:-enc.scalp]
        features = list(features)
        for level, proj in ((0, dec.conv_s0), (1, dec.conv_s1)):
            if level not in self.folded:
                features[level] = proj(features[level])
        return features

    def forward(self, image):
        fpn = self._backbone_fpn(image)[-self.m.num_feature_levels:]
        pix_feat = fpn[-1]
        # no_mem_embed is [1,1,C] in (HW)BC layout: one value per channel.
        image_embed = pix_feat + self.m.no_mem_embed.reshape(1, -1, 1, 1)
        return fpn[0], fpn[1], image_embed, pix_feat


class PromptDecoderGraph(nn.Module):
    """SAM2Base._forward_sam_heads up to (and without) the mask selection, for all 4 output tokens.

    The host decides multimask vs single mask (incl. dynamic_multimask_via_stability), applies
    NO_OBJ_SCORE in video mode and picks the object pointer of the chosen token.
    """

    def __init__(self, model):
        super().__init__()
        self.m = model
        pe = model.sam_prompt_encoder.get_dense_pe().detach().clone()
        self.register_buffer("dense_pe", pe, persistent=False)

    def _embed_points(self, point_coords, point_labels):
        """PromptEncoder._embed_points(pad=True) of the model's own package (sam2==1.1.0 writes it
        with torch.where, which traces with dynamic B and N)."""
        return self.m.sam_prompt_encoder._embed_points(point_coords, point_labels, pad=True)

    def _predict_masks(self, image_embed, sparse, dense, high_res_feats_0, high_res_feats_1):
        """MaskDecoder.predict_masks (sam2/modeling/sam/mask_decoder.py, repeat_image=False) with the
        per-image tensors (image embedding and high-res features with image_batch 1 or B, the dense
        position encoding) broadcast by the additions that read them instead of repeated to B
        first: the same sums, without copying four image-sized tensors per call."""
        dec = self.m.sam_mask_decoder
        s = 1 if dec.pred_obj_scores else 0
        token_weights = [dec.obj_score_token.weight] if dec.pred_obj_scores else []
        token_weights += [dec.iou_token.weight, dec.mask_tokens.weight]
        output_tokens = torch.cat(token_weights, dim=0).unsqueeze(0).expand(sparse.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse), dim=1)
        src = image_embed + dense  # [image_batch] + [B] -> [B]
        b, c, h, w = src.shape
        # TwoWayTransformer adds image_pe to the keys, which broadcasts its batch of 1
        hs, src = dec.transformer(src, self.dense_pe, tokens)
        iou_token_out = hs[:, s, :]
        mask_tokens_out = hs[:, s + 1:(s + 1 + dec.num_mask_tokens), :]
        src = src.transpose(1, 2).reshape(b, c, h, w)
        if dec.use_high_res_features:
            dc1, ln1, act1, dc2, act2 = dec.output_upscaling
            upscaled = act1(ln1(dc1(src) + high_res_feats_1))
            upscaled = act2(dc2(upscaled) + high_res_feats_0)
        else:
            upscaled = dec.output_upscaling(src)
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :])
                                for i, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1)
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        iou_pred = dec.iou_prediction_head(iou_token_out)
        if dec.pred_obj_scores:
            object_score_logits = dec.pred_obj_score_head(hs[:, 0, :])
        else:  # the official default: object assumed present (sigmoid(10) = 1)
            object_score_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)
        return masks, iou_pred, mask_tokens_out, object_score_logits

    def forward(self, image_embed, high_res_feats_0, high_res_feats_1, point_coords, point_labels,
                mask_input, has_mask_input):
        m = self.m
        pe = m.sam_prompt_encoder
        # prompt_encoder.forward(points=..., boxes=None, masks=...): points are always padded with
        # one (0,0)/-1 point because boxes are passed as points with labels 2/3.
        sparse = self._embed_points(point_coords, point_labels)
        dense_mask = pe._embed_masks(mask_input)
        use_mask = (has_mask_input > 0.5).reshape(-1, 1, 1, 1)
        # no_mask_embed broadcast by the select itself, not materialised per object first
        dense = torch.where(use_mask, dense_mask, pe.no_mask_embed.weight.reshape(1, -1, 1, 1))
        masks, iou_pred, mask_tokens_out, object_score_logits = self._predict_masks(
            image_embed, sparse, dense, high_res_feats_0, high_res_feats_1)
        # object pointers for every output token (sam2_base.py _forward_sam_heads, end)
        obj_ptr = m.obj_ptr_proj(mask_tokens_out)  # [B,4,C]
        if m.pred_obj_scores:
            if m.soft_no_obj_ptr:
                lam = torch.sigmoid(object_score_logits)
            else:
                lam = (object_score_logits > 0).float()
            lam = lam.unsqueeze(-1)  # [B,1,1]
            if m.fixed_no_obj_ptr:
                obj_ptr = lam * obj_ptr
            obj_ptr = obj_ptr + (1 - lam) * m.no_obj_ptr.reshape(1, 1, -1)
        return masks, iou_pred, obj_ptr, object_score_logits


class MemoryEncoderGraph(nn.Module):
    """SAM2Base._encode_new_memory, taking the chosen *low-res* mask logits (the official code always
    gets its high-res mask by bilinear upsampling of the 256x256 logits)."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def _memory_encoder(self, pix_feat, mask_for_mem):
        """MemoryEncoder.forward(skip_mask_sigmoid=True)["vision_features"]
        (sam2/modeling/memory_encoder.py) with each fuser block restated by _cx_block; the position
        encoding it also returns is input independent and not computed here."""
        me = self.m.memory_encoder
        x = me.pix_feat_proj(pix_feat) + me.mask_downsampler(mask_for_mem)
        x = me.fuser.proj(x)
        for blk in me.fuser.layers:
            x = self._cx_block(blk, x)
        return me.out_proj(x)

    @staticmethod
    def _cx_block(blk, x):
        """CXBlock.forward (memory_encoder.py) with its channel LayerNorm2d taken after the permute to
        channels-last, where it is the plain LayerNorm over the last axis (the same mean, variance
        and eps): one LayerNormalization node instead of nine element-wise ones."""
        y = blk.dwconv(x).permute(0, 2, 3, 1)
        y = F.layer_norm(y, tuple(blk.norm.weight.shape), blk.norm.weight, blk.norm.bias, blk.norm.eps)
        y = blk.pwconv2(blk.act(blk.pwconv1(y)))
        if blk.gamma is not None:
            y = blk.gamma * y
        return x + blk.drop_path(y.permute(0, 3, 1, 2))

    def forward(self, pix_feat, mask_logits, object_score_logits, binarize):
        m = self.m
        high = F.interpolate(mask_logits, size=(m.image_size, m.image_size), mode="bilinear",
                             align_corners=False)
        # torch.where(binarize, high > 0, sigmoid(high)) * scale + bias, the select written as
        # per-object weights 0 and scale: sigmoid and the step are finite, so x * 0 = 0 and
        # y + 0 = y give every element its official value, without a broadcast select over the
        # 1024x1024 mask
        use = (binarize > 0.5).float().reshape(-1, 1, 1, 1)
        scale = m.sigmoid_scale_for_mem_enc
        mask_for_mem = torch.sigmoid(high) * (scale * (1 - use)) + (high > 0).float() * (scale * use)
        if m.sigmoid_bias_for_mem_enc != 0.0:
            mask_for_mem = mask_for_mem + m.sigmoid_bias_for_mem_enc
        feats = self._memory_encoder(pix_feat, mask_for_mem)
        if m.no_obj_embed_spatial is not None:
            is_obj = (object_score_logits > 0).float()  # [B,1]
            feats = feats + (1 - is_obj[..., None, None]) * m.no_obj_embed_spatial[..., None, None]
        else:  # SAM 2.0: the score is not used; keep the input so every variant has one interface
            feats = feats + 0.0 * object_score_logits.reshape(-1, 1, 1, 1)
        return feats


def _apply_rope(x, cos, sin):
    """x [..., T, d] with T a multiple of cos.shape[0] handled by the caller; pairs (2i, 2i+1)."""
    shp = x.shape
    x2 = x.reshape(*shp[:-1], shp[-1] // 2, 2)
    xr, xi = x2[..., 0], x2[..., 1]
    out = torch.stack([xr * cos - xi * sin, xr * sin + xi * cos], dim=-1)
    return out.reshape(shp)


class MultiHeadAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(d)) v over heads, q/k `[B, h, L, d]`, v `[B, h, Lk, dv]` ->
    `[B, Lq, h*dv]`; exported as ONNX Runtime's `com.microsoft.MultiHeadAttention`, whose CPU kernel
    works through the keys in blocks and never holds the `Lq x Lk` score matrix (cross-attention to
    7 memory frames is 4096 x 28736 floats, 470 MB, per head and object as MatMul-Softmax-MatMul)
    and is faster. The value width may differ from the query/key width."""

    @staticmethod
    def forward(ctx, q, k, v, heads, d, dv):
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], heads * dv)

    @staticmethod
    def symbolic(g, q, k, v, heads, d, dv):
        def flat(x, width):  # [B, h, L, d] -> [B, L, h*d]
            t = g.op("Transpose", x, perm_i=[0, 2, 1, 3])
            return g.op("Reshape", t, g.op("Constant", value_t=torch.tensor([0, -1, width], dtype=torch.int64)))

        return g.op("com.microsoft::MultiHeadAttention", flat(q, heads * d), flat(k, heads * d),
                    flat(v, heads * dv), num_heads_i=heads, scale_f=1.0 / math.sqrt(d))


@contextlib.contextmanager
def hiera_attention_as_mha():
    """While exporting: Hiera's MultiScaleAttention (sam2/modeling/backbones/hieradet.py) with its
    scaled_dot_product_attention exported as ONNX Runtime's MultiHeadAttention, which works through
    the keys in blocks instead of holding each `L x L` score matrix (SAM 2.1-tiny's global-attention
    blocks attend 4096 tokens to 4096 in 4 heads: 256 MB of scores, written and read twice). The
    PyTorch arithmetic is the same; the class is restored afterwards, so reference outputs still
    come from the official forward. A no-op for image encoders without Hiera (EdgeTAM's RepViT)."""
    try:
        from sam2.modeling.backbones import hieradet
    except ImportError:  # a package without Hiera has nothing to patch
        yield
        return
    official = hieradet.MultiScaleAttention.forward

    def forward(self, x):
        B, H, W, _ = x.shape
        heads = self.num_heads
        d = self.dim_out // heads
        qkv = self.qkv(x).reshape(B, H * W, 3, heads, d)
        q, k, v = torch.unbind(qkv, 2)
        if self.q_pool:
            q = hieradet.do_pool(q.reshape(B, H, W, -1), self.q_pool)
            H, W = q.shape[1:3]
            q = q.reshape(B, H * W, heads, d)
        x = MultiHeadAttention.apply(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), heads, d, d)
        return self.proj(x.reshape(B, H, W, heads * d))

    hieradet.MultiScaleAttention.forward = forward
    try:
        yield
    finally:
        hieradet.MultiScaleAttention.forward = official


class MemoryAttentionGraph(nn.Module):
    """SAM2Base._prepare_memory_conditioned_features (non-init-cond branch, Step 2) with the memory
    bank already chosen by the host. Spatial positional encodings (maskmem_pos_enc + maskmem_tpos_enc)
    and object-pointer temporal encodings (get_1d_sine_pe + obj_ptr_tpos_proj) are built inside the
    graph from host-given indices/positions; the current frame's position encoding is a constant.

    Inputs:
      pix_feat      [image_batch,C,H,W] vision features WITHOUT no_mem_embed: one row shared by
                    every object (image_batch = 1) or one row per object (image_batch = B)
      mem_features  [B,S,Cm,H,W] maskmem_features of the selected frames (bf16-rounded by the host)
      mem_tpos_index [S] int64  index into maskmem_tpos_enc = num_maskmem - t_pos - 1
      obj_ptrs      [B,P,C]     object pointers
      obj_ptr_pos   [P] float32 temporal distance / t_diff_max (host computes, see host ref)
    """

    def __init__(self, model, vision_pos, maskmem_pos):
        super().__init__()
        m = model
        self.m = m
        self.ma = m.memory_attention
        self.C = m.hidden_dim
        self.Cm = m.mem_dim
        self.register_buffer("curr_pos", vision_pos.reshape(self.C, -1).t().contiguous(), persistent=False)
        self.register_buffer("maskmem_pos", maskmem_pos.reshape(self.Cm, -1).t().contiguous(), persistent=False)
        self.HW = self.curr_pos.shape[0]
        for name, fc in self._rope_tables(self.ma.layers[0]).items():
            fc = fc.detach().cpu()
            self.register_buffer(f"{name}_cos", fc.real.float().contiguous(), persistent=False)
            self.register_buffer(f"{name}_sin", fc.imag.float().contiguous(), persistent=False)

    def _rope_tables(self, layer0):
        """The official complex RoPE tables (compute_axial_cis) by name: `sa` (self-attention) and
        `ca` (cross-attention queries, repeated for every memory frame's keys); all layers share
        the same config."""
        tables = {"sa": layer0.self_attn.freqs_cis, "ca": layer0.cross_attn_image.freqs_cis}
        for fc in tables.values():
            assert fc.shape[0] == self.HW, "RoPE table must match the feature grid"
        return tables

    def _rope_memory_keys(self, kh):
        """RoPE on the spatial-memory keys kh [B,h,S*T,d]: the query table repeated for every memory
        frame (RoPEAttention with rope_k_repeat=True, sam2/modeling/sam/transformer.py)."""
        shp = kh.shape
        return _apply_rope(kh.reshape(shp[0], shp[1], -1, self.HW, shp[3]), self.ca_cos, self.ca_sin).reshape(shp)

    @staticmethod
    def _heads(x, att):
        # explicit head size (no -1): T may be 0 (no object pointers)
        h = att.num_heads
        return x.reshape(x.shape[0], x.shape[1], h, att.internal_dim // h).transpose(1, 2)  # [B,h,T,d]

    def _attn(self, att, q, k_parts, v_parts, q_cos, q_sin, rope_k):
        """RoPEAttention.forward with real-valued RoPE. k_parts/v_parts are token groups that are
        projected separately and concatenated (Linear is per token, so this equals projecting the
        concatenation); rope_k[i] tells how group i gets RoPE: None (pointer tokens: none), "q"
        (the query table: self-attention keys) or "mem" (spatial memories, _rope_memory_keys)."""
        q = _apply_rope(self._heads(att.q_proj(q), att), q_cos, q_sin)
        ks = []
        for kp, r in zip(k_parts, rope_k):
            kh = self._heads(att.k_proj(kp), att)
            if r == "q":
                kh = _apply_rope(kh, q_cos, q_sin)
            elif r == "mem":
                kh = self._rope_memory_keys(kh)
            ks.append(kh)
        k = torch.cat(ks, dim=2) if len(ks) > 1 else ks[0]
        h = att.num_heads
        d = att.internal_dim // h  # python ints: the export needs them static
        kv_in = att.v_proj.in_features
        if h * kv_in >= att.internal_dim:
            vs = [self._heads(att.v_proj(vp), att) for vp in v_parts]
            v = torch.cat(vs, dim=2) if len(vs) > 1 else vs[0]
            return att.out_proj(MultiHeadAttention.apply(q, k, v, h, d, d))  # [B,T,h*d]
        # Narrow values (cross-attention to kv_in_dim-wide memories): v_proj and out_proj are linear
        # and each attention row sums to one, so A (M Wv^T + bv) Wo^T + bo equals
        # (A M) (Wo Wv)^T + (Wo bv + bo) with A M averaging the kv_in-wide tokens themselves: a
        # quarter of the value work for SAM 2 (64 instead of 256 per token) and one projection
        # fewer. Per head, the block of Wo that reads head j folds with head j's rows of Wv.
        mem = torch.cat(list(v_parts), dim=1) if len(v_parts) > 1 else v_parts[0]  # [B,Lk,kv_in]
        v = mem.unsqueeze(1).expand(-1, h, -1, -1)  # [B,h,Lk,kv_in]
        out = MultiHeadAttention.apply(q, k, v, h, d, kv_in)  # [B,T,h*kv_in]
        wv, wo = att.v_proj.weight, att.out_proj.weight  # [h*d, kv_in], [C, h*d]
        w = torch.cat([wo[:, j * d:(j + 1) * d] @ wv[j * d:(j + 1) * d] for j in range(h)], dim=1)
        b = wo @ att.v_proj.bias + att.out_proj.bias
        return F.linear(out, w, b)

    def forward(self, pix_feat, mem_features, mem_tpos_index, obj_ptrs, obj_ptr_pos):
        m, C, Cm, HW = self.m, self.C, self.Cm, self.HW
        B = mem_features.shape[0]
        # --- memory tokens and their positions (sam2_base.py _prepare_memory_conditioned_features) ---
        mem_sp = mem_features.flatten(3).permute(0, 1, 3, 2).reshape(B, -1, Cm)  # [B,S*HW,Cm]
        tpos = m.maskmem_tpos_enc.reshape(m.num_maskmem, Cm)[mem_tpos_index]  # [S,Cm]
        pos_sp = (self.maskmem_pos.unsqueeze(0) + tpos.unsqueeze(1)).reshape(1, -1, Cm)
        pos_sp = pos_sp.expand(B, -1, -1)
        P = obj_ptrs.shape[1]
        if m.add_tpos_enc_to_obj_ptrs:
            tpos_dim = C if m.proj_tpos_enc_in_obj_ptrs else Cm
            pe_dim = tpos_dim // 2
            dim_t = torch.arange(pe_dim, dtype=torch.float32)
            dim_t = 10000 ** (2 * (dim_t // 2) / pe_dim)
            pe = obj_ptr_pos.unsqueeze(-1) / dim_t
            pe = torch.cat([pe.sin(), pe.cos()], dim=-1)
            ptr_pos = m.obj_ptr_tpos_proj(pe)  # [P,Cm]
        else:
            ptr_pos = obj_ptr_pos.unsqueeze(-1) * torch.zeros(1, Cm)
        if Cm < C:
            k_split = C // Cm
            ptr_tok = obj_ptrs.reshape(B, P * k_split, Cm)  # pointer p -> tokens (p,0..k-1)
            ptr_pos = ptr_pos.unsqueeze(1).expand(-1, k_split, -1).reshape(P * k_split, Cm)
        else:
            ptr_tok = obj_ptrs
        ptr_pos = ptr_pos.unsqueeze(0).expand(B, -1, -1)

        # --- MemoryAttention.forward (batch_first) ---
        out = pix_feat.flatten(2).transpose(1, 2)  # [B,HW,C]
        curr_pos = self.curr_pos.unsqueeze(0)
        if self.ma.pos_enc_at_input:
            out = out + 0.1 * curr_pos
        for i, layer in enumerate(self.ma.layers):
            # self attention (RoPE on q and k)
            t2 = layer.norm1(out)
            qk = t2 + curr_pos if layer.pos_enc_at_attn else t2
            out = out + self._attn(layer.self_attn, qk, [qk], [t2], self.sa_cos, self.sa_sin, ["q"])
            if i == 0:
                # Up to here nothing has read a memory: the first self-attention depends on the
                # frame alone, so it runs once per image row and every object shares it.
                out = out.expand(B, -1, -1)
            # cross attention to memory; RoPE on the spatial keys only (num_k_exclude_rope = ptr tokens)
            t2 = layer.norm2(out)
            q = t2 + curr_pos if layer.pos_enc_at_cross_attn_queries else t2
            ksp = mem_sp + pos_sp if layer.pos_enc_at_cross_attn_keys else mem_sp
            kpt = ptr_tok + ptr_pos if layer.pos_enc_at_cross_attn_keys else ptr_tok
            out = out + self._attn(layer.cross_attn_image, q, [ksp, kpt], [mem_sp, ptr_tok],
                                   self.ca_cos, self.ca_sin, ["mem", None])
            t2 = layer.norm3(out)
            out = out + layer.linear2(layer.activation(layer.linear1(t2)))
        out = self.ma.norm(out)
        side = int(round(math.sqrt(HW)))
        return out.transpose(1, 2).reshape(B, C, side, side)
