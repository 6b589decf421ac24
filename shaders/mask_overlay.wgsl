// Mask overlay: draws every object's mask over the frame image with its colour, fill opacity
// and an outline of constant screen width, at any zoom.
//
// Masks arrive as an R32Uint texture array: bit k of layer l set means object slot 32*l+k
// covers that image pixel. Per-slot colour and flags come from a storage buffer.

// KEEP IN SYNC with `OverlayUniforms` in src/render/masks.rs (tests/shaders.rs checks size).
struct Uniforms {
    image_origin_px: vec2<f32>,
    image_px_per_screen_px: vec2<f32>,
    image_size_px: vec2<u32>,
    layer_count: u32,
    slot_count: u32,
    outline_width_px: f32,
    fill_opacity: f32,
    _pad: vec2<f32>,
}

// KEEP IN SYNC with `SlotStyle` in src/render/masks.rs.
struct SlotStyle {
    color: vec4<f32>,
    flags: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const FLAG_VISIBLE: u32 = 1u;
const FLAG_SELECTED: u32 = 2u;
const FLAG_HOVERED: u32 = 4u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var masks: texture_2d_array<u32>;
@group(0) @binding(2) var<storage, read> styles: array<SlotStyle>;

struct VertexOut {
    @builtin(position) position: vec4<f32>,
}

// One triangle covering the whole viewport (the canvas rect); the fragment shader maps each
// framebuffer pixel to the image and discards outside it.
@vertex
fn vs_main(@builtin(vertex_index) vertex_index: u32) -> VertexOut {
    let x = f32((vertex_index << 1u) & 2u) * 2.0 - 1.0;
    let y = f32(vertex_index & 2u) * 2.0 - 1.0;
    var out: VertexOut;
    out.position = vec4<f32>(x, y, 0.0, 1.0);
    return out;
}

// Bits of `layer` at image position `p` (image pixels, continuous); 0 outside the image.
fn bits_at(p: vec2<f32>, layer: u32) -> u32 {
    let size = vec2<f32>(u.image_size_px);
    if (p.x < 0.0 || p.y < 0.0 || p.x >= size.x || p.y >= size.y) {
        return 0u;
    }
    return textureLoad(masks, vec2<i32>(floor(p)), i32(layer), 0).r;
}

// Premultiplied "over": `src` drawn on top of `dst`.
fn over(dst: vec4<f32>, src_rgb: vec3<f32>, src_a: f32) -> vec4<f32> {
    return vec4<f32>(src_rgb * src_a, src_a) + dst * (1.0 - src_a);
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    // Framebuffer pixel centre -> image pixels.
    let p = (in.position.xy - u.image_origin_px) * u.image_px_per_screen_px;
    let size = vec2<f32>(u.image_size_px);
    if (p.x < 0.0 || p.y < 0.0 || p.x >= size.x || p.y >= size.y) {
        discard;
    }
    // Neighbour offsets one and two outline widths away, in image pixels: the outline is
    // `outline_width_px` framebuffer pixels wide whatever the zoom.
    let d1 = u.outline_width_px * u.image_px_per_screen_px;
    let d2 = 2.0 * d1;

    var out = vec4<f32>(0.0);
    for (var layer = 0u; layer < u.layer_count; layer = layer + 1u) {
        let centre = bits_at(p, layer);
        if (centre == 0u) {
            continue;
        }
        let inner1 = bits_at(p + vec2<f32>(d1.x, 0.0), layer) & bits_at(p - vec2<f32>(d1.x, 0.0), layer)
            & bits_at(p + vec2<f32>(0.0, d1.y), layer) & bits_at(p - vec2<f32>(0.0, d1.y), layer);
        let inner2 = bits_at(p + vec2<f32>(d2.x, 0.0), layer) & bits_at(p - vec2<f32>(d2.x, 0.0), layer)
            & bits_at(p + vec2<f32>(0.0, d2.y), layer) & bits_at(p - vec2<f32>(0.0, d2.y), layer);
        let edge1 = centre & ~inner1;
        let edge2 = centre & ~inner2;
        var bits = centre;
        loop {
            if (bits == 0u) {
                break;
            }
            let k = firstTrailingBit(bits);
            bits = bits & (bits - 1u);
            let slot = layer * 32u + k;
            if (slot >= u.slot_count) {
                break;
            }
            let style = styles[slot];
            if ((style.flags & FLAG_VISIBLE) == 0u) {
                continue;
            }
            let bit = 1u << k;
            let emphasised = (style.flags & (FLAG_SELECTED | FLAG_HOVERED)) != 0u;
            var fill_a = style.color.a * u.fill_opacity;
            if ((style.flags & FLAG_SELECTED) != 0u) {
                fill_a = min(1.0, fill_a * 1.5);
            }
            out = over(out, style.color.rgb, fill_a);
            var on_edge = (edge1 & bit) != 0u;
            if (emphasised) {
                on_edge = (edge2 & bit) != 0u;
            }
            if (on_edge) {
                var line = style.color.rgb;
                if ((style.flags & FLAG_SELECTED) != 0u) {
                    line = mix(style.color.rgb, vec3<f32>(1.0), 0.6);
                } else if ((style.flags & FLAG_HOVERED) != 0u) {
                    line = mix(style.color.rgb, vec3<f32>(1.0), 0.3);
                }
                out = over(out, line, 1.0);
            }
        }
    }
    if (out.a <= 0.0) {
        discard;
    }
    return out;
}
