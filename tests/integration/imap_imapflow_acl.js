// imapflow reading a mailbox another user shares (driven by test_imap_acl.py).
// Prints one JSON object with what it saw; exits non-zero on any error.
const { ImapFlow } = require('imapflow');

const port = parseInt(process.env.IMAP_PORT, 10);
const shared = process.env.SHARED;

async function main() {
  const out = {};
  const c = new ImapFlow({ host: '127.0.0.1', port, secure: false, logger: false,
    tls: { rejectUnauthorized: false },
    auth: { user: 'bob@example.org', pass: 'bob-secret' } });
  await c.connect();
  out.namespaces = c.namespaces || null;
  out.list = (await c.list()).map((m) => m.path);
  const lock = await c.getMailboxLock(shared);
  try {
    out.readOnly = !!c.mailbox.readOnly;
    out.exists = c.mailbox.exists;
    out.subjects = [];
    for await (const m of c.fetch('1:*', { envelope: true })) out.subjects.push(m.envelope.subject);
    try {
      out.flagged = await c.messageFlagsAdd('1', ['\\Flagged']);
    } catch (e) {
      out.flagged = 'error';
    }
  } finally {
    lock.release();
  }
  await c.logout();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
