import NextAuth from "next-auth";
import { authOptions } from "../../../../lib/auth";

// eslint-disable-next-line @typescript-eslint/no-unsafe-assignment -- next-auth 4 types NextAuth() as any when used as an App Router handler
const handler = NextAuth(authOptions);
export { handler as GET, handler as POST };
