// A berth node-lite-v1 app: an HTTP server on $PORT that answers with a greeting.
// Edit this file in your workspace, then deploy (bump `restart` in the manifest) to serve it.
// Dependencies come from the template's shared, read-only node_modules.
'use strict';

const http = require('http');
const ms = require('ms');

const port = Number(process.env.PORT || 3000);
const greeting = process.env.GREETING || 'hello';
const started = Date.now();

const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.end(`${greeting} from node-lite-v1 (up ${ms(Date.now() - started)})\n`);
});

server.listen(port, () => console.log(`listening on ${port}`));

// Exit promptly on `docker stop` so deploys are quick.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
