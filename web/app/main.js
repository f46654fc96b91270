// /app/: sign in (the platform's tokens, or the development sign-in), then
// the chat app.
import { signIn } from './session.js';
import { mount } from './chat.js';

const root = document.getElementById('root');
const session = await signIn(root);
await mount(root, session);
