// @slack/web-api's WebClient against the sandbox's Slack Web API, with the bot token from the environment. The token
// is never printed: outcomes carry only what Slack answered.
import slackWebApi from '@slack/web-api';

import {env, main} from './common.mjs';

const {ErrorCode, retryPolicies, WebClient, WebClientEvent} = slackWebApi;

// `slackApiUrl` and `rejectRateLimitedCalls` are WebClientOptions
// (https://docs.slack.dev/tools/node-slack-sdk/reference/web-api/interfaces/WebClientOptions).
function client(options = {}) {
  return new WebClient(env('WITNESS_SLACK_BOT_TOKEN'), {slackApiUrl: env('WITNESS_SLACK_API'), ...options});
}

function slackRefusal(error) {
  return {
    refused: true,
    code: error.code,
    error: error.data?.error ?? null,
    needed: error.data?.needed ?? null,
    provided: error.data?.provided ?? null,
    retryAfter: error.retryAfter ?? null,
  };
}

function brief(message) {
  return {ts: message.ts, text: message.text};
}

await main({
  // Post a few messages, edit the last, then try to read the channel back with the token's scopes as they are.
  async messages({channel, texts, edited}) {
    const web = client();
    const posted = [];
    for (const text of texts) {
      posted.push(await web.chat.postMessage({channel, text, blocks: [{type: 'section', text: {type: 'mrkdwn', text}}]}));
    }
    const last = posted.at(-1);
    const updated = await web.chat.update({channel: last.channel, ts: last.ts, text: edited});
    let history;
    try {
      history = await web.conversations.history({channel, limit: 2});
    } catch (error) {
      history = slackRefusal(error);
    }
    return {
      posted: posted.map(p => ({ok: p.ok, channel: p.channel, ts: p.ts, text: p.message?.text,
        botId: p.message?.bot_id, blocks: p.message?.blocks})),
      updated: {ok: updated.ok, channel: updated.channel, ts: updated.ts, text: updated.text},
      history,
    };
  },

  // One page of two, then every page through the client's cursor paging.
  async history({channel}) {
    const web = client();
    const firstPage = await web.conversations.history({channel, limit: 2});
    const pages = [];
    for await (const page of web.paginate('conversations.history', {channel, limit: 2})) {
      pages.push(page.messages.map(brief));
    }
    return {
      firstPage: {
        messages: firstPage.messages.map(brief),
        hasMore: firstPage.has_more,
        nextCursor: firstPage.response_metadata?.next_cursor ?? null,
      },
      pages,
    };
  },

  // Posting faster than the channel allows: a client that rejects rate-limited calls gets the error with Retry-After;
  // a client left to its default waits Retry-After seconds, says so with the rate_limited event, and then succeeds.
  async rate_limited({channel}) {
    const rejecting = client({rejectRateLimitedCalls: true});
    const outcomes = [];
    for (const n of [1, 2]) {
      try {
        const posted = await rejecting.chat.postMessage({channel, text: `burst ${n}`});
        outcomes.push({ok: posted.ok});
      } catch (error) {
        outcomes.push(slackRefusal(error));
      }
    }
    const patient = client({retryConfig: retryPolicies.rapidRetryPolicy});
    const waits = [];
    patient.on(WebClientEvent.RATE_LIMITED, (retryAfter, {url}) => waits.push({retryAfter, method: url.split('/').pop()}));
    const started = Date.now();
    const retried = await patient.chat.postMessage({channel, text: 'after waiting'});
    return {
      rejecting: outcomes,
      rateLimitedCode: ErrorCode.RateLimitedError,
      patient: {ok: retried.ok, waits, seconds: (Date.now() - started) / 1000},
    };
  },
});
