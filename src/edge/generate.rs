//! `GET /generate?prompt=...` (302 to the image) and `POST /generate` (JSON):
//! reads the request, chooses the model, checks the input against the
//! model's schema, runs the prediction on Replicate, keeps its outputs.
//! What is decided without I/O lives in `crate::generation`.

use std::rc::Rc;

use super::request::Request;
use serde_json::{Map, Value};
use worker::Response;

use super::context::{Caller, TokenHints};
use super::net::{now_ms, read_body, sleep_ms};
use super::persist::{keep_outputs, Keeping, Seen};
use super::replicate::Replicate;
use super::schemas::schema_for;
use super::uploads::read_generate_form;
use super::{respond, RequestContext};
use crate::backoff::poll_delay_ms;
use crate::config::Config;
use crate::error::ApiError;
use crate::generation::{
    check_json_content_type, create_request, finished, parse_body, parse_json_object, usable, Generated, Job,
    MAX_BODY_BYTES,
};
use crate::image_id::{image_id, rfc3339_to_ms};
use crate::image_inputs::{self, ImageInput};
use crate::jobs::{CallerWebhook, JobKind};
use crate::model_schema::ModelSchema;
use crate::models::Choice;
use crate::multipart::is_form_data;
use crate::output::ImageKind;
use crate::prediction::{timed_out, Prediction, Status};

/// The largest `data:` image input accepted, decoded.
pub const MAX_DATA_URI_BYTES: usize = 10 * 1024 * 1024;
/// Query parameters that are not model input.
const NOT_INPUT: [&str; 2] = ["replicate_token", "model"];

pub async fn get(req: Request, cx: &RequestContext) -> Result<Response, ApiError> {
    let url = req.url().map_err(|_| ApiError::bad_request("Invalid URL"))?;
    let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let query = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let hints = TokenHints { query: query("replicate_token"), ..TokenHints::default() };
    let run = Run::settle(cx, &req, hints, query("model"), true).await?;
    let mut input = run.schema.input_from_query(&pairs, &NOT_INPUT)?;
    run.resolve_images(&mut input).await?;
    run.respond(Job::from_input(input)).await
}

pub async fn post(req: Request, cx: &RequestContext) -> Result<Response, ApiError> {
    let content_type = req.headers().get("Content-Type")?.unwrap_or_default();
    if is_form_data(&content_type) {
        return post_form(req, cx).await;
    }
    let body = read_json_object(&req).await?;
    let (body_token, mut job) = parse_body(body, &cx.config()?.extra_webhook_hosts)?;
    let hints = TokenHints { body: body_token.as_deref(), ..TokenHints::default() };
    let run = Run::settle(cx, &req, hints, job.model.as_deref(), false).await?;
    run.resolve_images(&mut job.input).await?;
    job.input = run.schema.validate(&job.input)?;
    run.respond(job).await
}

/// `POST /generate` as `multipart/form-data`: text fields are model inputs
/// (typed by the schema, as a GET's query is), files are stored as uploads
/// and passed by their URL.
async fn post_form(mut req: Request, cx: &RequestContext) -> Result<Response, ApiError> {
    let form = read_generate_form(&mut req, cx).await?;
    let hints = TokenHints { body: form.replicate_token.as_deref(), ..TokenHints::default() };
    let run = Run::settle(cx, &req, hints, form.model.as_deref(), false).await?;
    let mut input = run.schema.input_from_query(&form.fields, &NOT_INPUT)?;
    run.resolve_images(&mut input).await?;
    let input = run.schema.validate(&input)?;
    run.respond(Job::from_input(input)).await
}

/// Whether the caller asked to be answered at once (`Prefer: respond-async`).
fn prefers_async(req: &Request) -> bool {
    let value = req.headers().get("Prefer").ok().flatten().unwrap_or_default().to_ascii_lowercase();
    value.split([',', ';']).any(|p| p.trim() == "respond-async")
}

/// Whether the caller asked not to be answered from the cache.
fn no_cache(req: &Request) -> bool {
    let value = req.headers().get("Cache-Control").ok().flatten().unwrap_or_default().to_ascii_lowercase();
    value.split(',').any(|d| matches!(d.trim(), "no-cache" | "no-store" | "max-age=0"))
}

/// One generation: the caller, the model and its schema, settled once for
/// every form of the request.
struct Run<'a> {
    cx: &'a RequestContext,
    config: &'static Config,
    choice: Choice,
    schema: Rc<ModelSchema>,
    credential: Caller,
    is_get: bool,
    no_cache: bool,
    /// `Prefer: respond-async` on a POST: 202 at once, then the status URL.
    respond_async: bool,
}

impl<'a> Run<'a> {
    /// Identifies the caller, chooses the model it may run and reads the
    /// model's schema.
    async fn settle(
        cx: &'a RequestContext,
        req: &Request,
        hints: TokenHints<'_>,
        model: Option<&str>,
        is_get: bool,
    ) -> Result<Self, ApiError> {
        let config = cx.config()?;
        let credential = cx.caller(hints).await?;
        let choice = config.models.choose(model, credential.is_user(), credential.allowed_models())?;
        let schema = schema_for(cx, &choice.model, &credential).await;
        let respond_async = !is_get && prefers_async(req);
        Ok(Run { cx, config, choice, schema, credential, is_get, no_cache: no_cache(req), respond_async })
    }

    async fn resolve_images(&self, input: &mut Map<String, Value>) -> Result<(), ApiError> {
        resolve_image_inputs(self.cx, &self.schema, input).await
    }

    /// The answer: 302 to the image for GET, 200 for POST, with `X-Cache`.
    async fn respond(&self, job: Job) -> Result<Response, ApiError> {
        if self.respond_async {
            return self.start(job).await;
        }
        let (body, cache) = self.answer(job).await?;
        let mut response = respond::json(if self.is_get { 302 } else { 200 }, &body)?;
        if self.is_get {
            response.headers_mut().set("Location", body["imageUrl"].as_str().unwrap_or_default())?;
        }
        response.headers_mut().set("X-Cache", cache)?;
        Ok(response)
    }

    /// The answer's body and where it came from (`X-Cache`: `HIT`, `MISS`,
    /// `BYPASS` when the cache does not apply): from the cache when it holds
    /// one (or an identical request running here ends with one), else a new
    /// generation, kept for the next identical request.
    async fn answer(&self, job: Job) -> Result<(Value, &'static str), ApiError> {
        let cx = self.cx;
        let full = self.schema.with_defaults(&job.input);
        let plan = job
            .webhook
            .is_none()
            .then(|| super::cache::plan(cx, self.is_get, self.no_cache, &self.choice.model, &full))
            .flatten();
        let Some(plan) = plan else {
            return Ok((self.generate(job).await?.0, "BYPASS"));
        };
        // Marked as running before anything awaits, so that an identical
        // request arriving meanwhile in this isolate joins this one.
        let mine = super::cache::start(&plan.key);
        if plan.read {
            let hit = if mine {
                super::cache::lookup(cx, &plan.key).await
            } else {
                let deadline = now_ms().saturating_add(u64::from(self.config.deadline_seconds) * 1000);
                super::cache::join(cx, &plan.key, deadline).await
            };
            if let Some(entry) = hit {
                if mine {
                    super::cache::finish(&plan.key);
                }
                cx.note(|n| {
                    n.cache_hit = true;
                    n.prediction_id = Some(entry.prediction_id.clone());
                });
                super::usage::count_cache_hit(cx);
                return Ok((entry.body(cx), "HIT"));
            }
        }
        let result = self.generate(job).await;
        if let Ok((_, entry)) = &result {
            super::cache::keep(cx, &plan.key, entry);
        }
        if mine {
            super::cache::finish(&plan.key);
        }
        let (mut body, _) = result?;
        body["cached"] = Value::Bool(false);
        Ok((body, "MISS"))
    }

    /// An async generation: creates the prediction, announces the ids its
    /// images will have and answers 202 with them and the status URL; the
    /// rest happens when Replicate delivers, the status URL is read, the
    /// request's own polling after the answer, or the cron.
    async fn start(&self, job: Job) -> Result<Response, ApiError> {
        let cx = self.cx;
        super::usage::admit(cx, &self.credential).await?;
        let replicate = cx.replicate(&self.credential)?;
        let model = self.choice.model.model();
        cx.note(|n| {
            n.model = Some(self.choice.model.to_string());
            n.prompt = job.input.get("prompt").and_then(Value::as_str).map(str::to_owned);
        });
        let own_webhook = super::jobs::service_webhook(cx, &self.credential);
        let (path, body) = create_request(&self.choice.model, &job, own_webhook.as_deref());
        let deadline = now_ms().saturating_add(super::replicate::CREATE_TIMEOUT_MS);
        let prediction = replicate.create(&path, &body, None, deadline).await?;
        cx.note(|n| n.prediction_id = Some(prediction.id.clone()));
        let expected = self.schema.expected_outputs(&job.input).max(1);
        let ext = self.schema.output_format(&job.input).and_then(ImageKind::from_ext).unwrap_or(ImageKind::WEBP).ext;
        let created_ms = prediction.created_at.as_deref().and_then(rfc3339_to_ms).unwrap_or_else(now_ms);
        let ids = (0..expected).map(|at| image_id(&prediction.id, created_ms, at, ext)).collect();
        let webhook = job.webhook.clone().map(|url| CallerWebhook::new(url, job.webhook_events_filter.clone()));
        let model = prediction.model.clone().unwrap_or(model);
        let input = Value::Object(job.input);
        let mut index = super::jobs::job_index(cx, &self.credential, JobKind::Generate, model, &input, webhook);
        index.ids = Some(ids);
        index.awaiting = true;
        // Without a delivery to wait for, this request polls after answering.
        let watcher = own_webhook.is_none().then(|| replicate.clone());
        super::jobs::follow(cx, &index, &prediction, watcher).await?;
        if prediction.status != Status::Starting {
            index = super::jobs::advance(cx, index, &prediction).await?;
        }
        let mut response = super::jobs::answer(cx, &index, &prediction.id, 202)?;
        response.headers_mut().set("Location", &super::jobs::status_url(cx, &prediction.id))?;
        response.headers_mut().set("X-Cache", "BYPASS")?;
        Ok(response)
    }

    async fn generate(&self, job: Job) -> Result<(Value, super::cache::Entry), ApiError> {
        super::usage::admit(self.cx, &self.credential).await?;
        let replicate = self.cx.replicate(&self.credential)?;
        let generated =
            generate(self.cx, self.config, &self.choice, &self.schema, &self.credential, &replicate, job).await?;
        let model = self.choice.model.model();
        let body = generated.body(&model);
        let entry = super::cache::Entry {
            prediction_id: generated.prediction.id.clone(),
            model: body["model"].as_str().unwrap_or(&model).to_owned(),
            seed: body.get("seed").cloned(),
            ids: generated.images.iter().map(|(id, _)| id.clone()).collect(),
        };
        Ok((body, entry))
    }
}

/// Image inputs (every field whose schema says `format: uri`): an https URL
/// goes to Replicate as given, a `data:` image within `MAX_DATA_URI_BYTES`
/// too; the id or URL of an image this service stored (or is storing), or
/// of an upload, becomes its public URL here (an unknown image is a 400).
async fn resolve_image_inputs(
    cx: &RequestContext,
    schema: &ModelSchema,
    input: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let fields: Vec<String> = schema.image_fields().map(|f| f.name.clone()).collect();
    for field in fields {
        let Some(Value::String(value)) = input.get(&field) else { continue };
        let resolved = image_inputs::resolve(&field, value, &cx.base_url, MAX_DATA_URI_BYTES)?;
        if let ImageInput::Stored(id) = &resolved {
            if !super::image::will_serve(cx.store()?, id).await? {
                return Err(ApiError::invalid_input(format!("{field}: image {id} is not stored here")));
            }
        }
        input.insert(field, Value::String(image_inputs::public_url(&resolved, &cx.base_url)));
    }
    Ok(())
}

/// Reads a JSON object body: the right Content-Type, within the size limit.
async fn read_json_object(req: &Request) -> Result<Map<String, Value>, ApiError> {
    check_json_content_type(req.headers().get("Content-Type")?.as_deref())?;
    parse_json_object(&read_body(req, MAX_BODY_BYTES as u64).await?)
}

/// Runs the model and answers `(id, imageUrl)` per output as soon as Replicate
/// has them; copying into R2 continues in `wait_until`.
async fn generate(
    cx: &RequestContext,
    config: &Config,
    choice: &Choice,
    schema: &ModelSchema,
    caller: &Caller,
    replicate: &Replicate,
    job: Job,
) -> Result<Generated, ApiError> {
    cx.note(|n| {
        n.model = Some(choice.model.to_string());
        n.prompt = job.input.get("prompt").and_then(Value::as_str).map(str::to_owned);
    });
    let prediction = run(cx, config, choice, schema, caller, replicate, &job).await?;
    cx.note(|n| n.prediction_id = Some(prediction.id.clone()));
    let seed = job.input.get("seed").cloned();
    let model = choice.model.model();
    let ids = match &job.webhook {
        // The caller's webhook is told after the copies, by the job.
        Some(url) => {
            let webhook = CallerWebhook::new(url.clone(), job.webhook_events_filter.clone());
            let model = prediction.model.clone().unwrap_or_else(|| model.clone());
            let input = Value::Object(job.input);
            let index = super::jobs::job_index(cx, caller, JobKind::Generate, model, &input, Some(webhook));
            cx.store()?.open_job(&prediction.id).await?;
            // The outputs are all there: for this job, it has succeeded.
            let mut done = prediction.clone();
            if done.status == Status::Processing {
                done.status = Status::Succeeded;
            }
            let index = super::jobs::advance(cx, index, &done).await?;
            index.kept_ids().map(<[String]>::to_vec).unwrap_or_default()
        }
        None => {
            let requested = schema.output_format(&job.input).and_then(ImageKind::from_ext);
            let input = Value::Object(job.input);
            keep_outputs(cx, &model, requested, &prediction, &input, Seen::New, Keeping::default()).await?
        }
    };
    if ids.is_empty() {
        return Err(ApiError::generation_failed("the prediction has no output"));
    }
    let images = ids
        .into_iter()
        .map(|id| {
            let url = cx.image_url(&id);
            (id, url)
        })
        .collect();
    Ok(Generated { prediction, seed, images })
}

/// Creates the prediction and polls it to an end within the deadline.
async fn run(
    cx: &RequestContext,
    config: &Config,
    choice: &Choice,
    schema: &ModelSchema,
    caller: &Caller,
    replicate: &Replicate,
    job: &Job,
) -> Result<Prediction, ApiError> {
    let deadline = now_ms().saturating_add(u64::from(config.deadline_seconds) * 1000);
    let (path, body) = create_request(&choice.model, job, super::jobs::service_webhook(cx, caller).as_deref());
    let remaining_secs = deadline.saturating_sub(now_ms()) / 1000;
    let wait = u64::from(config.wait_seconds).min(remaining_secs.max(1));
    let mut prediction = replicate.create(&path, &body, Some(wait), deadline).await?;
    let expected = schema.expected_outputs(&job.input);
    let mut attempt = 0;
    while !finished(&prediction, expected) {
        let left = deadline.saturating_sub(now_ms());
        if left > 0 {
            sleep_ms(poll_delay_ms(attempt).min(left)).await;
            attempt += 1;
            match replicate.get(&prediction.id, deadline).await {
                Ok(read) => prediction = read,
                // A read cut short by the deadline is the deadline passing.
                Err(e) if e.status == 504 && now_ms() >= deadline => {}
                Err(e) => return Err(e),
            }
        }
        if now_ms() >= deadline && !finished(&prediction, expected) {
            let id = prediction.id.clone();
            let cancel = replicate.clone();
            cx.wait_until(async move { cancel.cancel(&id).await });
            return Err(timed_out(&prediction.id));
        }
    }
    usable(prediction)
}
