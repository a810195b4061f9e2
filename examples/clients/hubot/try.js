// Runs nightmare-monkey.js with a stand-in robot, no chat and no Hubot install needed:
//   node examples/clients/hubot/try.js "let's destroy it"
//   node examples/clients/hubot/try.js ack
// It talks to the monkey at NIGHTMARE_MONKEY_URL (default http://127.0.0.1:8080).
const http = require("http");

const said = process.argv[2] || "destroy";
const listeners = [];
const robot = {
  hear: (pattern, callback) => listeners.push([pattern, callback]),
  logger: { info: (line) => console.log(`[log] ${line}`) },
  // The small part of Hubot's scoped-http-client the script uses.
  http: (url) => {
    const headers = {};
    const client = {
      header: (name, value) => {
        headers[name] = value;
        return client;
      },
      post: (body) => (done) => {
        const req = http.request(url, { method: "POST", headers }, (res) => {
          let text = "";
          res.on("data", (chunk) => (text += chunk));
          res.on("end", () => done(null, res, text));
        });
        req.on("error", (err) => done(err));
        req.end(body);
      },
    };
    return client;
  },
};

require("./nightmare-monkey.js")(robot);
const msg = { send: (text) => console.log(`[chat] ${text}`), message: { user: { name: process.env.USER || "you" } } };
const heard = listeners.filter(([pattern]) => pattern.test(said));
if (heard.length === 0) {
  console.log(`[chat] (nothing: "${said}" does not wake the monkey)`);
}
heard.forEach(([, callback]) => callback(msg));
