// imapflow with condstore + qresync against roost (test_imap_imapflow.py).
// Prints one JSON object with what it saw; exits non-zero on any error.
const { ImapFlow } = require('imapflow');

const port = parseInt(process.env.IMAP_PORT, 10);
const auth = { user: 'alice@example.org', pass: 'alice-secret' };
const msg = (i) => `From: a@example.org\r\nSubject: s${i}\r\n\r\nbody\r\n`;

async function main() {
  const out = {};
  const opts = { host: '127.0.0.1', port, secure: false, auth, logger: false, doSTARTTLS: false,
    qresync: true };
  const c = new ImapFlow(opts);
  await c.connect();
  out.enabled = Array.from(c.enabled || []);
  await c.mailboxCreate('Sync');
  for (let i = 0; i < 3; i++)
    await c.append('Sync', msg(i));
  const box = await c.mailboxOpen('Sync');
  out.highestModseq = String(box.highestModseq);
  const expunged = [];
  c.on('expunge', (e) => expunged.push({ uid: e.uid, vanished: !!e.vanished }));
  const d = new ImapFlow(Object.assign({}, opts, { qresync: false }));
  await d.connect();
  await d.mailboxOpen('Sync');
  await d.messageFlagsAdd('2', ['\\Seen'], { uid: true });
  await d.messageDelete('3', { uid: true });
  await d.logout();
  await c.noop();
  out.expunged = expunged;
  const changed = [];
  for await (const m of c.fetch('1:*', { uid: true, flags: true },
    { uid: true, changedSince: BigInt(out.highestModseq) }))
    changed.push({ uid: m.uid, seen: m.flags.has('\\Seen'), modseq: String(m.modseq) });
  out.changed = changed;
  await c.logout();
  console.log(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
