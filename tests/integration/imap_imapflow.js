// imapflow as a modern client against roost (driven by test_imap_imapflow.py).
// Prints one JSON object with what it saw; exits non-zero on any error.
const { ImapFlow } = require('imapflow');

const port = parseInt(process.env.IMAP_PORT, 10);
const tlsPort = parseInt(process.env.IMAPS_PORT, 10);
const auth = { user: 'alice@example.org', pass: 'alice-secret' };
const tls = { rejectUnauthorized: false };
const msg = 'From: Ann <ann@example.org>\r\nTo: alice@example.org\r\n' +
  'Subject: imapflow test\r\nMessage-ID: <flow@example.org>\r\n\r\nHello from imapflow\r\n';

async function main() {
  const out = {};
  // STARTTLS on the plain port
  const c = new ImapFlow({ host: '127.0.0.1', port, secure: false, auth, tls,
    logger: false, doSTARTTLS: true });
  await c.connect();
  out.starttls = c.secureConnection || (c.socket && !!c.socket.encrypted) || false;
  out.list = (await c.list()).map((m) => [m.path, m.specialUse || null]);
  await c.mailboxCreate('Flow');
  await c.mailboxCreate('FlowDest');
  const app = await c.append('Flow', msg, ['\\Flagged']);
  out.appendUid = app.uid;
  const st = await c.status('Flow', { messages: true, uidNext: true, unseen: true });
  out.status = st;
  let lock = await c.getMailboxLock('Flow');
  try {
    const m = await c.fetchOne('*', { envelope: true, bodyStructure: true, source: true,
      flags: true, uid: true });
    out.envelopeSubject = m.envelope.subject;
    out.from = m.envelope.from[0].address;
    out.bodyType = m.bodyStructure.type;
    out.sourceLen = m.source.length;
    out.flags = Array.from(m.flags);
    out.search = await c.search({ subject: 'imapflow' });
    out.searchNone = await c.search({ subject: 'nothing-like-this' });
    const moved = await c.messageMove('1:*', 'FlowDest');
    out.moved = moved && moved.uidMap ? moved.uidMap.size : null;
  } finally {
    lock.release();
  }
  // IDLE notification: a second client (implicit TLS) appends
  await c.mailboxOpen('FlowDest');
  const got = new Promise((resolve) => c.on('exists', (d) => resolve(d.count)));
  c.idle().catch(() => {});
  const c2 = new ImapFlow({ host: '127.0.0.1', port: tlsPort, secure: true, auth, tls,
    logger: false });
  await c2.connect();
  out.implicitTls = true;
  await new Promise((r) => setTimeout(r, 300));
  await c2.append('FlowDest', msg);
  out.idleExists = await Promise.race([got,
    new Promise((r) => setTimeout(() => r('timeout'), 15000))]);
  await c2.logout();
  await c.logout();
  console.log(JSON.stringify(out));
}

main().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
