//! Post fields (CreatePost, UpdatePost) and ids: the input is title, content and id,
//! separated by newlines.
#![no_main]

use blog_service::domain::{NewPost, Title, parse_id, parse_post_update};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut fields = text.splitn(3, '\n');
    let title = fields.next().unwrap_or_default();
    let content = fields.next().unwrap_or_default();
    let id = fields.next().unwrap_or_default();
    if let Ok(valid) = Title::parse(title) {
        let kept = valid.as_str();
        assert_eq!(kept, kept.trim());
        assert!((1..=200).contains(&kept.chars().count()), "{kept:?}");
        assert!(!kept.contains('\0'));
    }
    if let Ok(post) = NewPost::parse(title, content) {
        assert!(!post.content.as_str().contains('\0'));
        assert!((1..=50_000).contains(&post.content.as_str().chars().count()));
    }
    if let Ok(uuid) = parse_id(id) {
        assert_eq!(parse_id(&uuid.to_string()), Ok(uuid));
    }
    let _ = parse_post_update(id, Some(title), Some(content));
    let _ = parse_post_update(id, None, None);
});
