//! Reads of a blog-service over a database of `--posts` posts (seeded in bulk by
//! bench/scale.sh): first pages, deep pages reached by page tokens, GetPost of random
//! ids, next to blog-service's own health.

use std::sync::Arc;

use anyhow::Context as _;
use pair_proto::blog::v1::{
    GetPostRequest, ListPostsRequest, blog_service_client::BlogServiceClient,
};
use serde::Serialize;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::{
    cli::PostsArgs,
    harness::{self, Caller, Failure, Rng, Stats, failure},
    util,
};

const PAGE_SIZE: i32 = 20;
const WALK_PAGE_SIZE: i32 = 100;

#[derive(Serialize)]
struct Run {
    scenario: &'static str,
    state_size: usize,
    #[serde(flatten)]
    stats: Stats,
    /// rps / the mean rate of health measured right before and right after.
    ratio_to_health: f64,
}

#[derive(Serialize)]
struct Report {
    kind: &'static str,
    backend: String,
    posts: usize,
    /// Every page walked once, 100 posts each, following the page tokens.
    walk_s: f64,
    walk_pages: usize,
    deep_tokens: usize,
    /// Before and after the reads.
    health: Vec<Stats>,
    runs: Vec<Run>,
}

pub async fn run(args: PostsArgs) -> anyhow::Result<()> {
    let channels = util::connect(&args.blog_url, args.load.connections).await?;
    let mut client = BlogServiceClient::new(channels[0].clone());

    // Walk every page: counts the posts, collects a page token per 100 posts (deep
    // pages) and a uniform sample of ids (reservoir).
    let started = Instant::now();
    let (mut seen, mut pages) = (0usize, 0usize);
    let mut tokens = Vec::new();
    let mut ids: Vec<String> = Vec::with_capacity(args.ids);
    let mut rng = Rng::new(0x5EED);
    let mut page_token = String::new();
    loop {
        let page = client
            .list_posts(ListPostsRequest {
                page_size: WALK_PAGE_SIZE,
                page_token,
                author_id: None,
            })
            .await
            .context("ListPosts failed while walking the pages")?
            .into_inner();
        pages += 1;
        for post in page.posts {
            seen += 1;
            if ids.len() < args.ids {
                ids.push(post.id);
            } else {
                let slot = rng.below(seen);
                if slot < args.ids {
                    ids[slot] = post.id;
                }
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        tokens.push(page.next_page_token.clone());
        page_token = page.next_page_token;
    }
    let walk_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        seen == args.posts,
        "blog-service lists {seen} posts, not --posts {}: seed the database first",
        args.posts
    );
    // Deep pages: past the first tenth of the posts.
    let deep: Arc<[String]> = tokens[tokens.len() / 10..].into();
    anyhow::ensure!(!deep.is_empty(), "too few posts for deep pages");
    eprintln!(
        "{seen} posts: walked {pages} pages in {walk_s:.1}s ({:.0} pages/s); {} deep page tokens, {} ids",
        pages as f64 / walk_s,
        deep.len(),
        ids.len()
    );
    let ids: Arc<[String]> = ids.into();

    let load = &args.load;
    let health = util::health(&channels, load).await?;
    eprintln!(
        "  health: {:.0}/s p99 {} µs",
        health.rps, health.latency_us.p99
    );
    let mut runs = Vec::new();
    for scenario in ["list-first-page", "list-deep-page", "get-post-random"] {
        let callers: Vec<Read> = (0..load.concurrency)
            .map(|i| Read {
                client: BlogServiceClient::new(util::pick(&channels, i)),
                scenario,
                deep: deep.clone(),
                ids: ids.clone(),
                rng: Rng::new(0xC0FFEE ^ (i as u64).wrapping_mul(0x9E37_79B9)),
            })
            .collect();
        let stats = harness::run(callers, load.warmup, load.duration, util::CALL_TIMEOUT).await?;
        eprintln!(
            "  {scenario}: {:.0}/s ({:.2} × health) p50 {} µs p99 {} µs errors {}",
            stats.rps,
            stats.rps / health.rps,
            stats.latency_us.p50,
            stats.latency_us.p99,
            stats.error_count
        );
        runs.push(Run {
            scenario,
            state_size: seen,
            ratio_to_health: stats.rps / health.rps,
            stats,
        });
    }
    let health_after = util::health(&channels, load).await?;
    // The machine is shared: the yardstick is health's mean over the runs framing the reads.
    let yardstick = (health.rps + health_after.rps) / 2.0;
    eprintln!(
        "  health again: {:.0}/s; × health against their mean:",
        health_after.rps
    );
    for run in &mut runs {
        run.ratio_to_health = run.stats.rps / yardstick;
        eprintln!("    {}: {:.2}", run.scenario, run.ratio_to_health);
    }
    let report = Report {
        kind: "posts",
        backend: load.backend.clone(),
        posts: seen,
        walk_s,
        walk_pages: pages,
        deep_tokens: deep.len(),
        health: vec![health, health_after],
        runs,
    };
    util::write_json(load.json.as_deref(), &report)
}

struct Read {
    client: BlogServiceClient<Channel>,
    scenario: &'static str,
    deep: Arc<[String]>,
    ids: Arc<[String]>,
    rng: Rng,
}

impl Caller for Read {
    async fn call(&mut self) -> Result<(), Failure> {
        if self.scenario == "get-post-random" {
            let id = self.ids[self.rng.below(self.ids.len())].clone();
            let post = self
                .client
                .get_post(GetPostRequest { id })
                .await
                .map_err(failure)?
                .into_inner()
                .post;
            return post.map(|_| ()).ok_or("EMPTY_RESPONSE");
        }
        let page_token = if self.scenario == "list-deep-page" {
            self.deep[self.rng.below(self.deep.len())].clone()
        } else {
            String::new()
        };
        let page = self
            .client
            .list_posts(ListPostsRequest {
                page_size: PAGE_SIZE,
                page_token,
                author_id: None,
            })
            .await
            .map_err(failure)?
            .into_inner();
        if page.posts.is_empty() {
            Err("EMPTY_PAGE")
        } else {
            Ok(())
        }
    }
}
