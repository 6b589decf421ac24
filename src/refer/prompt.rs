//! Prompt building: region text, chat template, media items (`pixelrefer/model/processor.py:39-90`,
//! `pixelrefer/__init__.py:83-141`, `demo/app.py:162-172,273-282`,
//! `pixelreferlite/mm_utils.py:25-32`; `onnx/PIXELREFER_NOTES.md` §5).

use super::ReferError;

/// The `<image>` placeholder (one token; `train.py:748-749`).
pub const IMAGE_TOKEN: &str = "<image>";
/// The `<video>` marker of user text (`pixelrefer/__init__.py:107-127`).
pub const VIDEO_TOKEN: &str = "<video>";
/// The per-object-token placeholder (one token).
pub const REGION_TOKEN: &str = "<REGION>";
/// The per-object placeholder replaced by `[<REGION>×k]`.
pub const REGION_PLACEHOLDER: &str = "<region>";

/// How the media appears in the user turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modal {
    /// A still image (`<image>\n`).
    Image,
    /// Video frames (`Time t s:<image>,…\n`).
    Video,
    /// No media item (PixelRefer-Lite, later turns).
    Text,
}

/// Python/Jinja `str(round(t, 1))` for timestamps: correctly rounded from the exact binary
/// value with ties to even, which is what Rust's `{:.1}` does (same strings for |t| < 1e15).
pub fn round1(t: f64) -> String {
    format!("{t:.1}")
}

/// The demo's region question (`demo/app.py:162-172` image, `:273-282` video), with each object
/// named by its tag (`<regionN>` for images, `<objectN>` for videos).
pub fn region_question(query: &str, tags: &[u32], video: bool) -> String {
    let name = |t: u32| {
        if video {
            format!("<object{t}>")
        } else {
            format!("<region{t}>")
        }
    };
    let n = tags.len();
    let mut s = if video {
        if n == 1 {
            format!(
                "{VIDEO_TOKEN}\nThere is 1 object in the video: {} {REGION_PLACEHOLDER}. ",
                name(tags[0])
            )
        } else {
            format!("{VIDEO_TOKEN}\nThere is {n} objects in the video: ")
        }
    } else if n == 1 {
        format!(
            "{IMAGE_TOKEN}\nThere is 1 region in the image: {} {REGION_PLACEHOLDER}. ",
            name(tags[0])
        )
    } else {
        format!("{IMAGE_TOKEN}\nThere is {n} region in the image: ")
    };
    if n > 1 {
        let parts: Vec<String> = tags
            .iter()
            .map(|&t| format!("{}{REGION_PLACEHOLDER}", name(t)))
            .collect();
        s.push_str(&parts.join(", "));
        s.push_str(". ");
    }
    s + query
}

/// One object's token groups: `(timestamp of its frame for Lite video, token count)`.
pub type RegionGroup = Vec<(Option<f64>, usize)>;

/// Replaces each `<region>` in order (`pixelrefer/__init__.py:83-86`; Lite video
/// `pixelreferlite/mm_utils.py:25-32`: `[Time t:<REGION>×n,Time t2:<REGION>×n]`, no `s`).
pub fn region_fill(
    text: &str,
    groups: &[RegionGroup],
    lite_video: bool,
) -> Result<String, ReferError> {
    let mut text = text.to_string();
    for g in groups {
        let rep = if lite_video {
            let parts: Vec<String> = g
                .iter()
                .map(|(t, n)| {
                    format!(
                        "Time {}:{}",
                        round1(t.unwrap_or(0.0)),
                        REGION_TOKEN.repeat(*n)
                    )
                })
                .collect();
            format!("[{}]", parts.join(","))
        } else {
            let n = g.first().map_or(0, |x| x.1);
            format!("[{}]", REGION_TOKEN.repeat(n))
        };
        let Some(pos) = text.find(REGION_PLACEHOLDER) else {
            return Err(ReferError::InvalidRequest(
                "more objects than <region> placeholders in the prompt".into(),
            ));
        };
        text.replace_range(pos..pos + REGION_PLACEHOLDER.len(), &rep);
    }
    Ok(text)
}

/// `mm_infer`'s message conversion plus the template's media items: splits the text on the modal
/// token (prepending it when absent), strips each text chunk, renders `<image>\n` or the video's
/// `Time {t}s:<image>` items joined by `,` and ended by `\n`.
pub fn user_content(text: &str, modal: Modal, timestamps: &[f64]) -> String {
    let tok = match modal {
        Modal::Image => IMAGE_TOKEN,
        Modal::Video => VIDEO_TOKEN,
        Modal::Text => return text.trim().to_string(),
    };
    let text = if text.contains(tok) {
        text.to_string()
    } else {
        format!("{tok}{text}")
    };
    let chunks: Vec<&str> = text.split(tok).collect();
    let mut out = String::new();
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            match modal {
                Modal::Image => {
                    out.push_str(IMAGE_TOKEN);
                    out.push('\n');
                }
                _ => {
                    for (f, t) in timestamps.iter().enumerate() {
                        out.push_str(&format!("Time {}s:{IMAGE_TOKEN}", round1(*t)));
                        out.push(if f + 1 < timestamps.len() { ',' } else { '\n' });
                    }
                }
            }
        }
        let c = chunk.trim();
        out.push_str(c);
    }
    out
}

/// The chat template with the generation prompt and no system message (Qwen models,
/// `pixelrefer/__init__.py:132-141`). `turns` = `(role, content)`.
pub fn chat_prompt(turns: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (role, content) in turns {
        s.push_str(&format!("<|im_start|>{role}\n{content}<|im_end|>\n"));
    }
    s + "<|im_start|>assistant\n"
}

/// The i-th `<image>` becomes `counts[i]` copies (`processor.py:228-234`).
pub fn expand_image_tokens(prompt: &str, counts: &[usize]) -> Result<String, ReferError> {
    let parts: Vec<&str> = prompt.split(IMAGE_TOKEN).collect();
    if parts.len() - 1 != counts.len() {
        return Err(ReferError::InvalidRequest(format!(
            "prompt has {} <image> but {} images",
            parts.len() - 1,
            counts.len()
        )));
    }
    let mut out = parts[0].to_string();
    for (c, p) in counts.iter().zip(&parts[1..]) {
        out.push_str(&IMAGE_TOKEN.repeat(*c));
        out.push_str(p);
    }
    Ok(out)
}

/// Markers a user must not type: they would be read as media or control tokens.
const RESERVED: [&str; 7] = [
    IMAGE_TOKEN,
    VIDEO_TOKEN,
    REGION_TOKEN,
    REGION_PLACEHOLDER,
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
];

/// Prepares a user question: removes reserved markers, checks that every `<objectN>` /
/// `<regionN>` names one of `tags`, and writes tags the way the model saw them in the region
/// text (`<regionN>` for images, `<objectN>` for videos).
pub fn normalize_question(question: &str, tags: &[u32], video: bool) -> Result<String, ReferError> {
    let mut q = question.to_string();
    for r in RESERVED {
        q = q.replace(r, "");
    }
    let mut out = String::with_capacity(q.len());
    let mut rest = q.as_str();
    while let Some(pos) = rest.find('<') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let parsed = ["<object", "<region"].iter().find_map(|prefix| {
            let body = tail.strip_prefix(prefix)?;
            let end = body.find('>')?;
            let digits = &body[..end];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((
                digits.parse::<u32>().ok(),
                prefix.len() + end + 1,
                &tail[..prefix.len() + end + 1],
            ))
        });
        match parsed {
            Some((id, len, written)) => {
                let Some(id) = id.filter(|id| tags.contains(id)) else {
                    return Err(ReferError::UnknownTag {
                        tag: written.to_string(),
                    });
                };
                out.push_str(&if video {
                    format!("<object{id}>")
                } else {
                    format!("<region{id}>")
                });
                rest = &tail[len..];
            }
            None => {
                out.push('<');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}
