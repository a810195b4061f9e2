// Description:
//   Asks the nightmare-monkey on a drill host for a fault when someone says "destroy"
//   (the original article's chat bot).
//
// Configuration:
//   NIGHTMARE_MONKEY_URL    the API's base URL, e.g. http://drill-host:8080 (default http://127.0.0.1:8080)
//   NIGHTMARE_MONKEY_TOKEN  the bearer token, when the monkey's config sets http.token
//
// Commands:
//   destroy - inject one fault (デストロイ and ですとろい work too)
//   ack - "I noticed it": marks the latest unnoticed fault detected, by you (time to detect)
//
// Install: copy this file into your Hubot's scripts/ directory and restart the bot.
// Try it without a chat: node examples/clients/hubot/try.js destroy

module.exports = (robot) => {
  const base = (process.env.NIGHTMARE_MONKEY_URL || "http://127.0.0.1:8080").replace(/\/$/, "");
  const token = process.env.NIGHTMARE_MONKEY_TOKEN;
  // POSTs `payload` to `path`; `ok` gets the answer of a 200, anything else is said.
  const post = (msg, path, payload, ok) => {
    let request = robot.http(`${base}${path}`).header("Content-Type", "application/json");
    if (token) {
      request = request.header("Authorization", `Bearer ${token}`);
    }
    request.post(JSON.stringify(payload))((err, res, body) => {
      if (err) {
        msg.send(`nightmare-monkey is unreachable: ${err.message}`);
        return;
      }
      let answer = {};
      try {
        answer = JSON.parse(body);
      } catch (_) {
        // reported below with the status
      }
      if (res.statusCode === 200) {
        ok(answer);
      } else {
        msg.send(`nightmare-monkey said no (${res.statusCode}): ${answer.message || body}`);
      }
    });
  };

  robot.hear(/(destroy|ですとろい|デストロイ)/i, (msg) => {
    post(msg, "/api/kill", { desc: "request from hubot" }, (answer) => {
      // Keep the victim to yourselves: the team is meant to find it.
      msg.send("(devil)< DESTROOOOY!!!");
      robot.logger.info(`nightmare-monkey: ${answer.result} ${answer.name}(PID:${answer.pid})`);
    });
  });

  robot.hear(/^ack\b/i, (msg) => {
    const by = (msg.message && msg.message.user && msg.message.user.name) || "hubot";
    post(msg, "/api/ack", { by }, (answer) => {
      msg.send(`Noticed by ${answer.by} after ${Math.round(answer.ttd_ms / 1000)} s: it was ${answer.fault} on ${answer.target}.`);
    });
  });
};
